package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// post sends a POST to the stack and returns the status code and body.
func (s *stack) post(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Post(s.srv.URL+path, "", nil)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// rewrite replaces the stack's configuration file and asks for a reload; it
// returns the answer.
func (s *stack) rewrite(t *testing.T, cfg string) (int, string) {
	t.Helper()
	if err := os.WriteFile(s.file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s.post(t, "/-/reload")
}

// checksTotal returns spengler_checks_total of one direction and result.
func (s *stack) checksTotal(t *testing.T, pair, dir, result string) float64 {
	t.Helper()
	labels := `direction="` + dir + `",pair="` + pair + `",result="` + result + `"`
	v, ok := s.metric(t, "spengler_checks_total", labels)
	if !ok {
		t.Fatalf("/metrics has no spengler_checks_total{%s}", labels)
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitCounting waits until the in_sync checks of a direction go past
// floor, and fails if the counter ever goes down meanwhile.
func (s *stack) waitCounting(t *testing.T, pair, dir string, floor float64) {
	t.Helper()
	deadline := time.Now().Add(3 * interval)
	prev := floor
	for {
		n := s.checksTotal(t, pair, dir, "in_sync")
		if n < prev {
			t.Fatalf("%s %s: spengler_checks_total went down from %v to %v", pair, dir, prev, n)
		}
		if n > floor {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: spengler_checks_total stuck at %v", pair, dir, n)
		}
		prev = n
		time.Sleep(100 * time.Millisecond)
	}
}

// reloadGauge returns the value of spengler_config_last_reload_successful.
func (s *stack) reloadGauge(t *testing.T) string {
	t.Helper()
	body, _ := s.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "spengler_config_last_reload_successful "); ok {
			return v
		}
	}
	t.Fatal("/metrics has no spengler_config_last_reload_successful")
	return ""
}

// hasPair reports whether /status or /metrics mention the pair.
func (s *stack) hasPair(t *testing.T, pair string) (inStatus, inMetrics bool) {
	t.Helper()
	for _, p := range s.status(t).Pairs {
		if p.Name == pair {
			inStatus = true
		}
	}
	body, _ := s.get(t, "/metrics")
	return inStatus, strings.Contains(body, `pair="`+pair+`"`)
}

// Extra pairs of the reload tests, on the logical servers of the Env.
const (
	gonePair = `
  - name: gone
    left: left
    right: right
    directions: [left_to_right]
    selector: select id, created_at as ts from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = $1
`
	changedBefore = `
  - name: changed
    left: left
    right: right
    directions: [left_to_right]
    selector: select id from no_such_table
    validator: select count(*) from a_rows where id = $1
`
	changedAfter = `
  - name: changed
    left: left
    right: right
    directions: [left_to_right]
    max_lag: 7s
    selector: select id, created_at as ts from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = $1
`
	addedPair = `
  - name: added
    left: right
    right: left
    directions: [left_to_right]
    selector: select id, created_at as ts from b_rows order by id desc limit 5
    validator: select count(*) from b_rows where id = $1
`
)

func TestReloadAddsRemovesAndChangesPairs(t *testing.T) {
	env := dbtest.SharedEnv(t)
	writers(t, env)
	before := envConfig(env, "", gonePair+changedBefore)
	after := envConfig(env, "", changedAfter+addedPair)
	s := startStack(t, before)
	for _, d := range allDirections {
		s.waitState(t, d[0], d[1], "in_sync", 10*time.Second)
	}
	s.waitState(t, "gone", "left_to_right", "in_sync", 10*time.Second)
	s.waitState(t, "changed", "left_to_right", "error", detect)
	counts := map[[2]string]float64{}
	for _, d := range allDirections {
		counts[d] = s.checksTotal(t, d[0], d[1], "in_sync")
	}

	if code, body := s.rewrite(t, after); code != http.StatusOK {
		t.Fatalf("POST /-/reload: %d %q, want 200", code, body)
	}
	// Gone at once, from both.
	if inStatus, inMetrics := s.hasPair(t, "gone"); inStatus || inMetrics {
		t.Errorf("removed pair still shown: in /status %v, in /metrics %v", inStatus, inMetrics)
	}
	// Unchanged directions keep their counters and go on counting.
	for _, d := range allDirections {
		s.waitCounting(t, d[0], d[1], counts[d])
	}
	// The changed pair runs its new query with its new settings, from a
	// fresh start.
	s.waitState(t, "changed", "left_to_right", "in_sync", 10*time.Second)
	st := s.direction(t, "changed", "left_to_right")
	if st.MaxLagSeconds != 7 || st.Checks["error"] != 0 {
		t.Errorf("changed pair: max_lag %vs, error checks %d; want 7s and none since the reload",
			st.MaxLagSeconds, st.Checks["error"])
	}
	if n := s.checksTotal(t, "changed", "left_to_right", "error"); n != 0 {
		t.Errorf("changed pair: spengler_checks_total{result=\"error\"} = %v, want 0", n)
	}
	s.waitState(t, "added", "left_to_right", "in_sync", 10*time.Second)
	if inStatus, inMetrics := s.hasPair(t, "added"); !inStatus || !inMetrics {
		t.Errorf("added pair: in /status %v, in /metrics %v; want both", inStatus, inMetrics)
	}

	// A bad file: refused with the reason, the running configuration goes on.
	code, body := s.rewrite(t, strings.Replace(after, "max_rows: 20", "max_rows: 20\n  max_lagg: 1m", 1))
	if code != http.StatusInternalServerError ||
		!strings.Contains(body, `global.max_lagg: unknown key "max_lagg"`) {
		t.Errorf("POST /-/reload of a bad file: %d %q, want 500 with the reason", code, body)
	}
	if v := s.reloadGauge(t); v != "0" {
		t.Errorf("spengler_config_last_reload_successful = %q after a bad file, want 0", v)
	}
	cfg := s.status(t).Config
	if cfg.LastReloadSuccessful || !strings.Contains(cfg.LastReloadError, "max_lagg") {
		t.Errorf("/status config after a bad file: %+v", cfg)
	}
	if _, ok := s.metric(t, "spengler_replication_in_sync", `pair="added"`); !ok {
		t.Errorf("the running configuration lost pair added after a bad file")
	}
	for _, d := range append(allDirections, [2]string{"changed", "left_to_right"}) {
		s.waitCounting(t, d[0], d[1], s.checksTotal(t, d[0], d[1], "in_sync"))
	}

	// Good again, and unchanged: nothing restarts.
	n := s.checksTotal(t, "logical", "left_to_right", "in_sync")
	if code, body := s.rewrite(t, after); code != http.StatusOK {
		t.Fatalf("POST /-/reload: %d %q, want 200", code, body)
	}
	if v := s.reloadGauge(t); v != "1" {
		t.Errorf("spengler_config_last_reload_successful = %q after a good file, want 1", v)
	}
	s.waitCounting(t, "logical", "left_to_right", n)
}

func TestReloadRereadsPasswordFile(t *testing.T) {
	const role, first, second = "mon_rotate", "F1rst-r0tation", "S3cond-r0tation"
	env := dbtest.SharedEnv(t)
	writer(t, env.Left, "a_rows")
	t.Cleanup(func() {
		// Leave the Env as found, so that the test can run again on it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		env.Left.ExecDB(ctx, dbtest.EnvDB, "revoke all on a_rows from "+role)
		env.Left.Exec(ctx, "drop role if exists "+role)
	})
	requirePasswords(t, env.Left, map[string]string{role: first})
	pwFile := filepath.Join(t.TempDir(), "password")
	setPassword := func(pw string) {
		t.Helper()
		if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setPassword(first)
	s := startStack(t, envConfig(env, fmt.Sprintf(`
  rotated: {driver: postgres, dsn: "postgres://%s@127.0.0.1:%d/%s?sslmode=disable", password_file: %q}
`, role, env.Left.Port, dbtest.EnvDB, pwFile), `
  - name: rotated
    left: rotated
    right: right
    directions: [left_to_right]
    selector: select id from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = $1
`))
	s.waitState(t, "rotated", "left_to_right", "in_sync", 10*time.Second)

	// The file has the next password before the server does: after a
	// reload, spengler uses it and is refused.
	setPassword(second)
	if code, body := s.post(t, "/-/reload"); code != http.StatusOK {
		t.Fatalf("POST /-/reload: %d %q, want 200", code, body)
	}
	s.waitState(t, "rotated", "left_to_right", "error", detect)
	if st := s.direction(t, "rotated", "left_to_right"); !strings.Contains(st.Error,
		"password authentication failed") {
		t.Errorf("with a password the server does not know yet: error %q", st.Error)
	}
	// The server catches up: the password read at the reload now works.
	if err := env.Left.Exec(t.Context(), fmt.Sprintf("alter role %s password '%s'", role, second)); err != nil {
		t.Fatal(err)
	}
	s.waitState(t, "rotated", "left_to_right", "in_sync", detect)
	if log := s.logs.String(); strings.Contains(log, first) || strings.Contains(log, second) {
		t.Errorf("the log shows a password")
	}
}
