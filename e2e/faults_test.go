package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

func TestFrozenServer(t *testing.T) {
	env := dbtest.SharedEnv(t)
	writers(t, env)
	s := startStack(t, envConfig(env, "", ""))
	for _, d := range allDirections {
		s.waitState(t, d[0], d[1], "in_sync", 10*time.Second)
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

	// Scrapes must not wait for the frozen server: each one ends well before
	// a check's timeout would.
	deadline := time.Now().Add(detect)
	for _, dir := range []string{"left_to_right", "right_to_left"} {
		for {
			if _, took := s.get(t, "/metrics"); took >= timeout {
				t.Fatalf("/metrics took %v while a server was frozen, want under %v", took, timeout)
			}
			if s.direction(t, "logical", dir).State == "error" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("logical %s: no error within %v of freezing the server", dir, detect)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, dir := range []string{"left_to_right", "right_to_left"} {
		st := s.direction(t, "logical", dir)
		if st.InSync || st.Success || !strings.Contains(st.Error, "timed out") ||
			!strings.Contains(st.Error, `"right"`) {
			t.Errorf("logical %s: %+v, want a timeout on right", dir, st)
		}
		if st.DurationSeconds < timeout.Seconds()*0.9 || st.DurationSeconds > timeout.Seconds()*2 {
			t.Errorf("logical %s: check took %vs, want it cut at the timeout (%v)",
				dir, st.DurationSeconds, timeout)
		}
		labels := `direction="` + dir + `",pair="logical"`
		for metric, want := range map[string]string{
			"spengler_check_success": "0", "spengler_replication_in_sync": "0",
		} {
			if v, _ := s.metric(t, metric, labels); v != want {
				t.Errorf("%s{%s} = %q, want %s", metric, labels, v, want)
			}
		}
	}
	if v, _ := s.metric(t, "spengler_database_up", `database="right"`); v != "0" {
		t.Errorf("spengler_database_up{database=\"right\"} = %q, want 0", v)
	}
	if st := s.direction(t, "stream", "left_to_right"); !st.InSync {
		t.Errorf("stream: %+v, want it unaffected by the frozen logical server", st)
	}
	// Nothing of Spengler's may be left running on the live side.
	waitNoActiveQueries(t, env.Left)

	if err := env.Right.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	for _, dir := range []string{"left_to_right", "right_to_left"} {
		s.waitState(t, "logical", dir, "in_sync", 3*detect)
	}
	if v, _ := s.metric(t, "spengler_database_up", `database="right"`); v != "1" {
		t.Errorf("spengler_database_up{database=\"right\"} = %q after thawing, want 1", v)
	}
}

// waitNoActiveQueries waits until no query of Spengler's runs on p.
func waitNoActiveQueries(t *testing.T, p *dbtest.PG) {
	t.Helper()
	const q = `select count(*) from pg_stat_activity
		where application_name = 'spengler' and state <> 'idle'`
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := p.WaitInt(ctx, dbtest.EnvDB, 0, q); err != nil {
		t.Errorf("queries of Spengler's still running on %s: %v", p.Name, err)
	}
}

func TestSlowQueryIsCancelledOnServer(t *testing.T) {
	env := dbtest.SharedEnv(t)
	s := startStack(t, envConfig(env, "", `
  - name: slow
    left: left
    right: right
    directions: [left_to_right]
    selector: select id from a_rows, pg_sleep(30) order by id desc limit 1
    validator: select count(*) from a_rows where id = $1
`))
	s.waitState(t, "slow", "left_to_right", "error", detect)
	st := s.direction(t, "slow", "left_to_right")
	if !strings.Contains(st.Error, "timed out") && !strings.Contains(st.Error, "statement timeout") {
		t.Errorf("slow selector: error %q, want a timeout", st.Error)
	}
	// The selector starts again every interval; no run may outlive its check.
	const overdue = `select count(*) from pg_stat_activity where application_name = 'spengler'
		and state <> 'idle' and now() - query_start > interval '1500 milliseconds'`
	for range 20 {
		if n, err := env.Left.QueryInt(t.Context(), dbtest.EnvDB, overdue); err != nil || n != 0 {
			t.Fatalf("%d queries of Spengler's outlived their check (err %v)", n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.engine.Close()
	waitNoActiveQueries(t, env.Left)
}

func TestStoppedServer(t *testing.T) {
	env := dbtest.SharedEnv(t)
	writers(t, env)
	s := startStack(t, envConfig(env, "", ""))
	s.waitState(t, "stream", "left_to_right", "in_sync", 10*time.Second)

	if err := env.Standby.Stop(); err != nil {
		t.Fatal(err)
	}
	started := false
	defer func() {
		if !started {
			env.Standby.Start(context.Background())
		}
	}()
	s.waitState(t, "stream", "left_to_right", "error", detect)
	st := s.direction(t, "stream", "left_to_right")
	if !strings.Contains(st.Error, `target "standby"`) || st.InSync {
		t.Errorf("stream with the standby stopped: %+v, want an error naming the target", st)
	}
	waitMetric(t, s, "spengler_database_up", `database="standby"`, "0")
	if v, _ := s.metric(t, "spengler_database_up", `database="primary"`); v != "1" {
		t.Errorf("primary up = %q, want 1", v)
	}

	if err := env.Standby.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	started = true
	s.waitState(t, "stream", "left_to_right", "in_sync", 5*detect)
	waitMetric(t, s, "spengler_database_up", `database="standby"`, "1")
}

func waitMetric(t *testing.T, s *stack, name, labels, want string) {
	t.Helper()
	deadline := time.Now().Add(detect)
	for {
		v, _ := s.metric(t, name, labels)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %q, want %s", name, labels, v, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBadQueries(t *testing.T) {
	env := dbtest.SharedEnv(t)
	writers(t, env)
	bad := func(name, selector, validator string) string {
		return fmt.Sprintf(`
  - name: %s
    left: left
    right: right
    directions: [left_to_right]
    selector: %s
    validator: %s
`, name, selector, validator)
	}
	s := startStack(t, envConfig(env, "",
		bad("badsql", "select id from no_such_table", "select count(*) from a_rows where id = $1")+
			bad("empty", "select id from a_rows where false",
				"select count(*) from a_rows where id = $1")+
			bad("norow", "select id from a_rows order by id desc limit 5",
				"select 1 from a_rows where id = $1 and false")+
			bad("nullid", "select null::bigint as id",
				"select count(*) from a_rows where id = $1")))

	cases := []struct {
		pair, state, reason string
	}{
		{"badsql", "error", `source "left": selector: ERROR: relation "no_such_table" does not exist`},
		{"empty", "out_of_sync", "selector returned no rows"},
		{"norow", "error", `target "right": validator: validator returned no row for id`},
		{"nullid", "error", "selector returned a NULL id"},
	}
	for _, tc := range cases {
		s.waitState(t, tc.pair, "left_to_right", tc.state, detect)
		st := s.direction(t, tc.pair, "left_to_right")
		if st.InSync || !strings.Contains(st.Reason, tc.reason) {
			t.Errorf("%s: in_sync %v reason %q, want not in sync because %q",
				tc.pair, st.InSync, st.Reason, tc.reason)
		}
		if v, _ := s.metric(t, "spengler_replication_in_sync", `pair="`+tc.pair+`"`); v != "0" {
			t.Errorf("%s: spengler_replication_in_sync = %q, want 0", tc.pair, v)
		}
	}
	for _, d := range allDirections {
		if st := s.direction(t, d[0], d[1]); st.State != "in_sync" {
			s.waitState(t, d[0], d[1], "in_sync", detect)
		}
		st := s.direction(t, d[0], d[1])
		if st.Checks["error"] != 0 || st.Checks["out_of_sync"] != 0 {
			t.Errorf("%s %s was affected by the bad pairs: checks %v", d[0], d[1], st.Checks)
		}
	}
	if v, _ := s.metric(t, "spengler_database_up", `database="left"`); v != "1" {
		t.Errorf("an SQL error took database left down: up = %q", v)
	}
}
