package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/internal/dbtest"
)

// resultTrail holds every result an engine published since it was made.
type resultTrail struct {
	mu      sync.Mutex
	results []*collector.Result
}

// trailResults records every result of s's engine until the test ends.
func trailResults(t *testing.T, s *stack) *resultTrail {
	t.Helper()
	l := &resultTrail{}
	t.Cleanup(s.engine.Subscribe(func(r *collector.Result) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.results = append(l.results, r)
	}))
	return l
}

// of returns the recorded results of one direction that finished at or after
// from, oldest first.
func (l *resultTrail) of(pair, dir string, from time.Time) []*collector.Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*collector.Result
	for _, r := range l.results {
		if r.Pair == pair && r.Direction == dir && !r.LastCheck.Before(from) {
			out = append(out, r)
		}
	}
	return out
}

// heartbeatAge returns the heartbeat age of a direction in /status, failing
// the test when it has none.
func heartbeatAge(t *testing.T, s *stack, pair, dir string) float64 {
	t.Helper()
	st := s.direction(t, pair, dir)
	if st.HeartbeatAgeSeconds == nil {
		t.Fatalf("%s %s: no heartbeat_age_seconds in /status: %+v", pair, dir, st)
	}
	return *st.HeartbeatAgeSeconds
}

// healthyAge is the most a heartbeat may be behind on a healthy link: written
// by the check before, at most an interval and a check ago.
const healthyAge = interval + timeout

// hbEnvPairs are the heartbeat-only pairs of the shared Env: the physical
// standby with one table for its one direction, and the logical pair with a
// table per direction, each published from its writer.
const hbEnvPairs = `
  - name: hb_stream
    left: primary
    right: standby
    directions: [left_to_right]
    heartbeat: {table: ` + dbtest.HeartbeatTable + `}
  - name: hb_logical
    left: left
    right: right
    left_to_right: {heartbeat: {table: ` + dbtest.HeartbeatA + `}}
    right_to_left: {heartbeat: {table: ` + dbtest.HeartbeatB + `}}
`

// hbEnvDirections are the directions of hbEnvPairs.
var hbEnvDirections = [][2]string{
	{"hb_stream", "left_to_right"},
	{"hb_logical", "left_to_right"},
	{"hb_logical", "right_to_left"},
}

// idleEnv writes one row on every writing side of the Env and waits until
// each has arrived, so that a data check of an idle Env has rows to prove.
func idleEnv(t *testing.T, env *dbtest.Env) {
	t.Helper()
	ctx := t.Context()
	for _, w := range []struct {
		src, dst *dbtest.PG
		table    string
	}{
		{env.Primary, env.Standby, dbtest.StreamTable},
		{env.Left, env.Right, dbtest.TableA},
		{env.Right, env.Left, dbtest.TableB},
	} {
		id, err := w.src.InsertRows(ctx, dbtest.EnvDB, w.table, 1)
		if err == nil {
			err = w.dst.WaitRow(ctx, dbtest.EnvDB, w.table, id)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestHeartbeatDetectsBreakOfIdleSource breaks each direction of the Env in
// turn while nothing at all is written on the sources. The data checks of
// the same links cannot see it (their newest rows arrived long ago); the
// heartbeat must, for exactly that direction, within max_lag + interval +
// timeout.
func TestHeartbeatDetectsBreakOfIdleSource(t *testing.T) {
	env := dbtest.SharedEnv(t)
	if err := env.CreateStreamHeartbeat(t.Context()); err != nil {
		t.Fatal(err)
	}
	idleEnv(t, env)
	s := startStack(t, envConfig(env, "", hbEnvPairs))
	every := append(append([][2]string{}, allDirections...), hbEnvDirections...)
	for _, d := range every {
		s.waitState(t, d[0], d[1], "in_sync", 10*time.Second)
	}
	for _, d := range hbEnvDirections {
		st := s.direction(t, d[0], d[1])
		age := heartbeatAge(t, s, d[0], d[1])
		if age > healthyAge.Seconds() || st.RowsChecked != 0 {
			t.Errorf("%s %s healthy: heartbeat age %vs rows checked %d, want at most %v and 0",
				d[0], d[1], age, st.RowsChecked, healthyAge)
		}
		labels := `direction="` + d[1] + `",pair="` + d[0] + `"`
		if v, ok := s.metric(t, "spengler_replication_heartbeat_age_seconds", labels); !ok || v == "" {
			t.Errorf("spengler_replication_heartbeat_age_seconds{%s} missing", labels)
		}
	}
	for _, d := range allDirections {
		if st := s.direction(t, d[0], d[1]); st.HeartbeatAgeSeconds != nil {
			t.Errorf("%s %s has no heartbeat, yet /status gives it an age", d[0], d[1])
		}
	}

	cases := []breakCase{
		{"hb_stream", "left_to_right",
			func(ctx context.Context, e *dbtest.Env) error { return e.Standby.PauseReplay(ctx) },
			func(ctx context.Context, e *dbtest.Env) error { return e.Standby.ResumeReplay(ctx) }},
		{"hb_logical", "left_to_right",
			func(ctx context.Context, e *dbtest.Env) error { return e.Logical.BreakAToB(ctx) },
			func(ctx context.Context, e *dbtest.Env) error { return e.Logical.HealAToB(ctx) }},
		{"hb_logical", "right_to_left",
			func(ctx context.Context, e *dbtest.Env) error { return e.Logical.BreakBToA(ctx) },
			func(ctx context.Context, e *dbtest.Env) error { return e.Logical.HealBToA(ctx) }},
	}
	for _, tc := range cases {
		t.Run(tc.pair+"/"+tc.dir, func(t *testing.T) {
			ctx := t.Context()
			others := map[[2]string]string{}
			for _, d := range every {
				if d != [2]string{tc.pair, tc.dir} {
					others[d] = badChecks(s.direction(t, d[0], d[1]).Checks)
				}
			}
			if err := tc.brk(ctx, env); err != nil {
				t.Fatal(err)
			}
			healed := false
			defer func() {
				if !healed {
					tc.heal(context.Background(), env)
				}
			}()
			took := s.waitState(t, tc.pair, tc.dir, "out_of_sync", detect+2*time.Second)
			if took > detect+500*time.Millisecond {
				t.Errorf("detected after %v, want within max_lag+interval+timeout = %v", took, detect)
			}
			st := s.direction(t, tc.pair, tc.dir)
			age1 := heartbeatAge(t, s, tc.pair, tc.dir)
			if !st.Success || st.InSync || age1 <= maxLag.Seconds() || st.LagSeconds < age1 ||
				!strings.Contains(st.Reason, "heartbeat on the target is") {
				t.Errorf("broken direction: %+v (heartbeat age %vs), want a heartbeat older "+
					"than max_lag, lag at least that, and a reason", st, age1)
			}
			time.Sleep(2 * interval)
			if age2 := heartbeatAge(t, s, tc.pair, tc.dir); age2 <= age1 {
				t.Errorf("heartbeat age %vs then %vs, want it growing", age1, age2)
			}
			// Exactly this direction: the others, and the data checks of the
			// same link (blind to an idle source), carry on as before.
			for d, before := range others {
				st := s.direction(t, d[0], d[1])
				if after := badChecks(st.Checks); !st.InSync || after != before {
					t.Errorf("%s %s was affected: state %q (%s), out_of_sync/error checks %s -> %s",
						d[0], d[1], st.State, st.Reason, before, after)
				}
			}

			if err := tc.heal(ctx, env); err != nil {
				t.Fatal(err)
			}
			healed = true
			s.waitState(t, tc.pair, tc.dir, "in_sync", detect+5*time.Second)
			if age := heartbeatAge(t, s, tc.pair, tc.dir); age > maxLag.Seconds() {
				t.Errorf("after healing, heartbeat age %vs, want within max_lag", age)
			}
		})
	}

	// Each logical heartbeat table carries the origin of its writer, and
	// only that one, on both sides.
	for _, c := range []struct {
		srv           *dbtest.PG
		table, origin string
		want          int64
	}{
		{env.Left, dbtest.HeartbeatA, "hb_logical:left", 1},
		{env.Right, dbtest.HeartbeatA, "hb_logical:left", 1},
		{env.Left, dbtest.HeartbeatA, "hb_logical:right", 0},
		{env.Right, dbtest.HeartbeatB, "hb_logical:right", 1},
		{env.Left, dbtest.HeartbeatB, "hb_logical:right", 1},
		{env.Right, dbtest.HeartbeatB, "hb_logical:left", 0},
		{env.Standby, dbtest.HeartbeatTable, "hb_stream:primary", 1},
	} {
		n, err := c.srv.CountWhere(t.Context(), dbtest.EnvDB, c.table, "origin", c.origin)
		if err != nil || n != c.want {
			t.Errorf("%s: %s has %d rows of origin %q (err %v), want %d",
				c.srv.Name, c.table, n, c.origin, err, c.want)
		}
	}
}

// hbMariaPair is a heartbeat-only pair over the MariaEnv: one table on both
// servers, each writing its own origin.
const hbMariaPair = `
  - name: hb
    left: a
    right: b
    heartbeat: {table: ` + dbtest.HeartbeatTable + `}
`

// idleMaria writes one row on each side of the MariaEnv and waits until
// both have arrived.
func idleMaria(t *testing.T, env *dbtest.MariaEnv) {
	t.Helper()
	for _, d := range []dbtest.Direction{dbtest.AToB, dbtest.BToA} {
		id, err := env.Insert(t.Context(), d, 1)
		if err == nil {
			err = env.WaitReplicated(t.Context(), d, id)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestMariaDBHeartbeatDetectsBreakOfIdleSource stops replication one way
// (STOP SLAVE on one side) while nothing is written: the heartbeat must show
// it for exactly that direction, and START SLAVE must bring it back.
func TestMariaDBHeartbeatDetectsBreakOfIdleSource(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	if err := env.CreateHeartbeat(t.Context()); err != nil {
		t.Fatal(err)
	}
	idleMaria(t, env)
	s := startStack(t, mariaConfig(env, "", hbMariaPair))
	for _, pair := range []string{"maria", "hb"} {
		for _, dir := range mariaDirections {
			s.waitState(t, pair, dir, "in_sync", 15*time.Second)
		}
	}
	for _, dir := range mariaDirections {
		if age := heartbeatAge(t, s, "hb", dir); age > healthyAge.Seconds() {
			t.Errorf("hb %s healthy: heartbeat age %vs, want at most %v", dir, age, healthyAge)
		}
	}

	for _, d := range []dbtest.Direction{dbtest.AToB, dbtest.BToA} {
		t.Run(d.String(), func(t *testing.T) {
			ctx := t.Context()
			dir := mariaDir(d)
			other := mariaDir(dbtest.AToB + dbtest.BToA - d)
			before := map[string]string{}
			for _, k := range [][2]string{{"hb", other}, {"maria", dir}, {"maria", other}} {
				before[k[0]+" "+k[1]] = badChecks(s.direction(t, k[0], k[1]).Checks)
			}
			if err := env.StopReplication(ctx, d); err != nil {
				t.Fatal(err)
			}
			healed := false
			defer func() {
				if !healed {
					env.Heal(context.Background(), d)
				}
			}()
			took := s.waitState(t, "hb", dir, "out_of_sync", detect+3*time.Second)
			if took > detect+500*time.Millisecond {
				t.Errorf("detected after %v, want within max_lag+interval+timeout = %v", took, detect)
			}
			st := s.direction(t, "hb", dir)
			age1 := heartbeatAge(t, s, "hb", dir)
			if !st.Success || age1 <= maxLag.Seconds() || st.LagSeconds < age1 ||
				!strings.Contains(st.Reason, "heartbeat on the target is") {
				t.Errorf("broken direction: %+v (heartbeat age %vs), want a heartbeat older "+
					"than max_lag and a reason", st, age1)
			}
			time.Sleep(2 * interval)
			if age2 := heartbeatAge(t, s, "hb", dir); age2 <= age1 {
				t.Errorf("heartbeat age %vs then %vs, want it growing", age1, age2)
			}
			for k, b := range before {
				pair, kdir, _ := strings.Cut(k, " ")
				st := s.direction(t, pair, kdir)
				if after := badChecks(st.Checks); !st.InSync || after != b {
					t.Errorf("%s was affected: state %q (%s), out_of_sync/error checks %s -> %s",
						k, st.State, st.Reason, b, after)
				}
			}

			if err := env.Heal(ctx, d); err != nil {
				t.Fatal(err)
			}
			healed = true
			s.waitState(t, "hb", dir, "in_sync", detect+5*time.Second)
		})
	}
}

// TestHeartbeatWriteDenied runs a pair whose left database is reached as a
// role that may read the heartbeat tables but not write them: the direction
// that writes there fails with an error that says so, and nothing else does.
func TestHeartbeatWriteDenied(t *testing.T) {
	env := dbtest.SharedEnv(t)
	ctx := t.Context()
	if err := env.CreateStreamHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.Left.CreateReadOnlyRole(ctx, dbtest.EnvDB, "spengler_ro"); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, fmt.Sprintf(`
global: {interval: %s, timeout: %s, max_lag: %s}
databases:
  primary: {driver: postgres, dsn: "%s"}
  standby: {driver: postgres, dsn: "%s"}
  left_ro: {driver: postgres, dsn: "%s"}
  right: {driver: postgres, dsn: "%s"}
pairs:
  - name: hb_stream
    left: primary
    right: standby
    directions: [left_to_right]
    heartbeat: {table: %s}
  - name: hb_denied
    left: left_ro
    right: right
    left_to_right: {heartbeat: {table: %s}}
    right_to_left: {heartbeat: {table: %s}}
`, interval, timeout, maxLag, env.Primary.DSN(dbtest.EnvDB), env.Standby.DSN(dbtest.EnvDB),
		env.Left.DSNAs("spengler_ro", dbtest.EnvDB), env.Right.DSN(dbtest.EnvDB),
		dbtest.HeartbeatTable, dbtest.HeartbeatA, dbtest.HeartbeatB))

	s.waitState(t, "hb_denied", "left_to_right", "error", detect)
	s.waitState(t, "hb_denied", "right_to_left", "in_sync", detect)
	s.waitState(t, "hb_stream", "left_to_right", "in_sync", detect)
	time.Sleep(2 * interval) // a few more checks: it stays that way

	st := s.direction(t, "hb_denied", "left_to_right")
	for _, want := range []string{`source "left_ro"`, "heartbeat", "permission denied",
		dbtest.HeartbeatA} {
		if !strings.Contains(st.Error, want) {
			t.Errorf("error %q does not say %q", st.Error, want)
		}
	}
	if st.State != "error" || st.Success || st.Checks["in_sync"] != 0 {
		t.Errorf("denied direction: %+v, want an error at every check", st)
	}
	for _, d := range [][2]string{{"hb_denied", "right_to_left"}, {"hb_stream", "left_to_right"}} {
		st := s.direction(t, d[0], d[1])
		if !st.InSync || st.Checks["error"] != 0 || st.Error != "" {
			t.Errorf("%s %s: %+v, want in sync with no error: only the denied write fails",
				d[0], d[1], st)
		}
	}
	for labels, want := range map[string]string{
		`direction="left_to_right",pair="hb_denied"`: "0",
		`direction="right_to_left",pair="hb_denied"`: "1",
		`direction="left_to_right",pair="hb_stream"`: "1",
	} {
		if v, _ := s.metric(t, "spengler_check_success", labels); v != want {
			t.Errorf("spengler_check_success{%s} = %q, want %s", labels, v, want)
		}
	}
	// An SQL error is an answer: the database is up.
	if v, _ := s.metric(t, "spengler_database_up", `database="left_ro"`); v != "1" {
		t.Errorf("spengler_database_up{database=\"left_ro\"} = %q, want 1", v)
	}
}

// TestMariaDBHeartbeatWriteDenied is TestHeartbeatWriteDenied on MariaDB:
// the left database is reached as a user that may only read.
func TestMariaDBHeartbeatWriteDenied(t *testing.T) {
	const user, password = "spengler_ro", "ro-Pw-41"
	env := dbtest.SharedMariaEnv(t)
	ctx := t.Context()
	if err := env.CreateHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.CreateReadOnlyUser(ctx, user, password); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, mariaConfig(env,
		fmt.Sprintf(`  a_ro: {driver: mysql, dsn: "%s"}`, env.A.DSN(user, password, dbtest.EnvDB)),
		hbMariaPair+`
  - name: hb_denied
    left: a_ro
    right: b
    heartbeat: {table: `+dbtest.HeartbeatTable+`}
`))
	s.waitState(t, "hb_denied", "left_to_right", "error", detect)
	s.waitState(t, "hb_denied", "right_to_left", "in_sync", detect)
	for _, dir := range mariaDirections {
		s.waitState(t, "hb", dir, "in_sync", detect)
	}
	time.Sleep(2 * interval)

	st := s.direction(t, "hb_denied", "left_to_right")
	for _, want := range []string{`source "a_ro"`, "heartbeat", "command denied",
		dbtest.HeartbeatTable} {
		if !strings.Contains(st.Error, want) {
			t.Errorf("error %q does not say %q", st.Error, want)
		}
	}
	if strings.Contains(st.Error, password) {
		t.Errorf("error %q shows the password", st.Error)
	}
	if st.State != "error" || st.Success || st.Checks["in_sync"] != 0 {
		t.Errorf("denied direction: %+v, want an error at every check", st)
	}
	for _, d := range [][2]string{{"hb_denied", "right_to_left"}, {"hb", "left_to_right"},
		{"hb", "right_to_left"}} {
		st := s.direction(t, d[0], d[1])
		if !st.InSync || st.Checks["error"] != 0 || st.Error != "" {
			t.Errorf("%s %s: %+v, want in sync with no error: only the denied write fails",
				d[0], d[1], st)
		}
	}
}
