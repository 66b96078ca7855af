package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// mariaDirections are the directions of mariaConfig's pair.
var mariaDirections = []string{"left_to_right", "right_to_left"}

// mariaDir maps a direction of the MariaEnv to the direction of pair maria.
func mariaDir(d dbtest.Direction) string {
	if d == dbtest.BToA {
		return "right_to_left"
	}
	return "left_to_right"
}

// mariaConfig is a configuration for the shared MariaEnv: pair maria with A
// on the left and B on the right, and any extra databases and pairs. A is
// reached with the driver's DSN form and the password inside it; B with a
// mysql:// URL and the password beside it.
func mariaConfig(env *dbtest.MariaEnv, extraDatabases, extraPairs string) string {
	return fmt.Sprintf(`
global:
  interval: %s
  timeout: %s
  max_lag: %s
  max_rows: 20
databases:
  a: {driver: mysql, dsn: "%s"}
  b: {driver: mysql, dsn: "mysql://%s@%s/%s", password: "%s"}
%s
pairs:
  - name: maria
    left: a
    right: b
    left_to_right:
      selector: select id, created_at as ts from a_rows order by id desc limit 20
      validator: select count(*) from a_rows where id = ?
    right_to_left:
      selector: select id, created_at as ts from b_rows order by id desc limit 20
      validator: select count(*) from b_rows where id = ?
%s
`, interval, timeout, maxLag,
		env.MonitorDSN(env.A),
		dbtest.MariaMonitorUser, env.B.Addr(), dbtest.EnvDB, dbtest.MariaMonitorPassword,
		extraDatabases, extraPairs)
}

// rowInserter is a server of the harness that can add rows to a table with
// the harness schema.
type rowInserter interface {
	InsertRows(ctx context.Context, db, table string, n int) (int64, error)
}

// rowWriter inserts a row into table on srv every 200ms until the test ends.
func rowWriter(t *testing.T, srv rowInserter, table string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			ictx, icancel := context.WithTimeout(ctx, time.Second)
			srv.InsertRows(ictx, dbtest.EnvDB, table, 1) // fails while srv is frozen
			icancel()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// mariaWriters keeps rows coming on both servers of the MariaEnv.
func mariaWriters(t *testing.T, env *dbtest.MariaEnv) {
	rowWriter(t, env.A, dbtest.TableA)
	rowWriter(t, env.B, dbtest.TableB)
}

// waitMariaInSync waits until both directions of pair maria are in sync.
func waitMariaInSync(t *testing.T, s *stack, limit time.Duration) {
	t.Helper()
	for _, dir := range mariaDirections {
		s.waitState(t, "maria", dir, "in_sync", limit)
	}
}

// monitorThreads returns the threads of the monitor user on m that run a
// statement (any command but Sleep) and have been at it for at least older;
// with all set, idle connections count too.
func monitorThreads(ctx context.Context, m *dbtest.MariaDB, older time.Duration, all bool) ([]dbtest.MariaProcess, error) {
	list, err := m.ProcessList(ctx)
	if err != nil {
		return nil, err
	}
	var out []dbtest.MariaProcess
	for _, p := range list {
		if p.User != dbtest.MariaMonitorUser || p.Time < older {
			continue
		}
		if all || p.Command != "Sleep" {
			out = append(out, p)
		}
	}
	return out, nil
}

// describeThreads writes threads for a failure message.
func describeThreads(list []dbtest.MariaProcess) string {
	var parts []string
	for _, p := range list {
		parts = append(parts, fmt.Sprintf("#%d %s %s for %v: %q", p.ID, p.Command, p.State,
			p.Time.Round(time.Millisecond), p.Info))
	}
	return strings.Join(parts, "; ")
}

// waitNoMonitorThreads waits up to limit until m has no thread of the monitor
// user as monitorThreads selects them.
func waitNoMonitorThreads(t *testing.T, m *dbtest.MariaDB, older time.Duration, all bool, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	for {
		list, err := monitorThreads(ctx, m, older, all)
		if err == nil && len(list) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("%s: threads of the monitor user still there after %v: %s (err %v)",
				m.Name, limit, describeThreads(list), err)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// shown returns the places among Spengler's outputs that contain any of the
// given strings: /status, /metrics, the status page (HTML and JSON) and the
// log.
func shown(t *testing.T, s *stack, secrets ...string) []string {
	t.Helper()
	pages := map[string]string{"spengler log": s.logs.String()}
	pages["/status"], _ = s.get(t, "/status")
	pages["/metrics"], _ = s.get(t, "/metrics")
	pages["/"], _ = s.get(t, "/")
	pages["/ as JSON"], _ = s.get(t, "/", "Accept", "application/json")
	var found []string
	for where, text := range pages {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				found = append(found, fmt.Sprintf("%s shows %q", where, secret))
			}
		}
	}
	return found
}
