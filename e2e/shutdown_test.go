package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
	"github.com/spengler-dev/spengler/server"
)

// shutdownConfig has two pairs whose checks hang: hung13 reads a_rows on
// left and asks right, which the test freezes; slow1 runs a selector that
// sleeps on left. Their checks are bounded by long timeouts, so a prompt
// exit proves that shutdown cancels them instead of waiting them out.
//
// The names are picked so that the first check of each starts within a
// fraction of a second: the engine spreads first checks over the interval by
// a hash of the pair's name. Were that hash to change, the waits below still
// allow a whole interval.
const shutdownConfig = `
global: {interval: 10s, timeout: 10s, max_lag: 10s, max_rows: 20}
databases:
  left: {driver: postgres, dsn: "%s"}
  right: {driver: postgres, dsn: "%s"}
pairs:
  - name: hung13
    left: left
    right: right
    directions: [left_to_right]
    selector: select id, created_at as ts from a_rows order by id desc limit 20
    validator: select count(*) from a_rows where id = $1
  - name: slow1
    left: left
    right: right
    directions: [left_to_right]
    interval: 30s
    timeout: 30s
    max_lag: 30s
    selector: select id from a_rows, pg_sleep(60) order by id desc limit 1
    validator: select count(*) from a_rows where id = $1
`

// spenglerBackends counts the server processes serving Spengler; with
// active, only those running a query.
func spenglerBackends(active bool) string {
	q := "select count(*) from pg_stat_activity where application_name = 'spengler'"
	if active {
		q += " and state = 'active'"
	}
	return q
}

func TestSIGTERMDuringChecks(t *testing.T) {
	const (
		checkInterval   = 10 * time.Second
		shutdownTimeout = 2 * time.Second
		exitLimit       = shutdownTimeout + 3*time.Second
	)
	env := dbtest.SharedEnv(t)
	bin := buildSpengler(t)
	writer(t, env.Left, "a_rows")
	cfg := writeFile(t, t.TempDir(), "spengler.yml", fmt.Sprintf(shutdownConfig,
		env.Left.DSN(dbtest.EnvDB), env.Right.DSN(dbtest.EnvDB)))
	addr := listenAddress(t)
	p := startSpengler(t, bin, "--config.file="+cfg, "--web.listen-address="+addr,
		"--web.shutdown-timeout="+shutdownTimeout.String())
	status := func() (server.Status, error) {
		var st server.Status
		resp, err := http.Get("http://" + addr + "/status")
		if err != nil {
			return st, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return st, err
		}
		return st, json.Unmarshal(body, &st)
	}
	// lastCheck returns when the latest check of hung13 ended, or nil.
	lastCheck := func() (*time.Time, error) {
		st, err := status()
		if err != nil {
			return nil, err
		}
		for _, pair := range st.Pairs {
			if pair.Name == "hung13" {
				return pair.Directions[0].LastCheck, nil
			}
		}
		return nil, fmt.Errorf("/status has no hung13: %+v", st)
	}

	// The first check of hung13 leaves connections to both sides in the pool.
	var first time.Time
	p.waitServing(t, checkInterval+20*time.Second, func() error {
		last, err := lastCheck()
		if err == nil && last == nil {
			err = fmt.Errorf("hung13 not checked yet")
		}
		if err == nil {
			first = *last
		}
		return err
	})
	// slow1 sleeps on left until its timeout or until someone cancels it.
	ctx, cancel := context.WithTimeout(t.Context(), 35*time.Second)
	defer cancel()
	err := env.Left.WaitInt(ctx, dbtest.EnvDB, 1,
		spenglerBackends(true)+" and query like '%pg_sleep(60)%'")
	if err != nil {
		t.Fatalf("the slow selector never ran: %v", err)
	}

	if err := env.Right.Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			env.Right.Thaw()
		}
	}()
	// The next check of hung13 starts one interval after the first and
	// hangs on the frozen server until its timeout, another interval later.
	time.Sleep(time.Until(first.Add(checkInterval + time.Second)))
	if last, err := lastCheck(); err != nil || !last.Equal(first) {
		t.Fatalf("hung13: last check %v (err %v), want %v: no check hanging on the frozen server",
			last, err, first)
	}

	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := p.exitCode(t, exitLimit)
	took := time.Since(sent)
	t.Logf("exited %v after SIGTERM with code %d", took.Round(time.Millisecond), code)
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	out := p.out.String()
	switch {
	case !strings.Contains(out, "Shutting down"):
		t.Errorf("the log does not tell of the shutdown:\n%s", out)
	case strings.Contains(out, "still closing at the shutdown timeout"):
		t.Logf("the checks were cancelled but a connection to the frozen server held the " +
			"engine's close up to the shutdown timeout")
	case !strings.Contains(out, "Stopped"):
		t.Errorf("the log does not tell that spengler stopped:\n%s", out)
	}

	// Nothing of Spengler's may keep running on either server: the sleeping
	// selector was cancelled, not left to its statement timeout.
	ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := env.Left.WaitInt(ctx, dbtest.EnvDB, 0, spenglerBackends(false)); err != nil {
		t.Errorf("left after spengler exited: %v", err)
	}
	if err := env.Right.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := env.Right.WaitInt(ctx, dbtest.EnvDB, 0, spenglerBackends(false)); err != nil {
		t.Errorf("right after thawing: %v", err)
	}
}
