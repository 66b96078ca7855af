package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/internal/dbtest"
)

// farZone returns time zones at least 10 hours away from the exporter's own
// (time.Local): a zone without daylight saving time by name, for
// PostgreSQL, and a fixed offset as MariaDB writes it, with its duration.
func farZone(t *testing.T) (name, offset string, d time.Duration) {
	t.Helper()
	name, offset, d = "Pacific/Kiritimati", "+13:00", 13*time.Hour
	if _, local := time.Now().Zone(); local > 0 {
		name, offset, d = "Pacific/Pago_Pago", "-11:00", -11*time.Hour
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load time zone %s: %v", name, err)
	}
	_, local := time.Now().Zone()
	_, far := time.Now().In(loc).Zone()
	if diff := time.Duration(far-local) * time.Second; diff < 10*time.Hour && diff > -10*time.Hour {
		t.Fatalf("%s is %v from the local time zone, want at least 10h", name, diff)
	}
	return name, offset, d
}

// checkAges checks the heartbeat age and lag of every result of a healthy
// direction: both within the time a heartbeat takes to come round.
func checkAges(t *testing.T, what string, rs []*collector.Result) {
	t.Helper()
	if len(rs) == 0 {
		t.Fatalf("%s: no results", what)
	}
	for _, r := range rs {
		if !r.InSync || !r.HeartbeatFound || r.HeartbeatAge < 0 || r.HeartbeatAge > healthyAge ||
			r.Lag > healthyAge {
			t.Errorf("%s at %s: in sync %v (%s), heartbeat age %v, lag %v; want in sync with "+
				"both within %v", what, r.LastCheck.Format(time.RFC3339Nano), r.InSync, r.Reason,
				r.HeartbeatAge, r.Lag, healthyAge)
		}
	}
}

// checkBrokenAges checks the results of a direction broken between
// brokeFrom and brokeAt: the heartbeat found was written before the break,
// so its age is the time since then, give or take one round of checks.
func checkBrokenAges(t *testing.T, what string, rs []*collector.Result, brokeFrom, brokeAt time.Time) {
	t.Helper()
	if len(rs) < 3 {
		t.Fatalf("%s: %d results after the break, want at least 3", what, len(rs))
	}
	const slack = 250 * time.Millisecond
	for _, r := range rs {
		low := r.LastCheck.Sub(brokeAt) - slack
		high := r.LastCheck.Sub(brokeFrom) + interval + timeout
		if r.HeartbeatAge < low || r.HeartbeatAge > high || r.Lag < r.HeartbeatAge || r.Lag > high {
			t.Errorf("%s at %s: heartbeat age %v, lag %v; want the age within [%v, %v] "+
				"(the time since the break) and the lag from it to %v", what,
				r.LastCheck.Format(time.RFC3339Nano), r.HeartbeatAge, r.Lag, low, high, high)
		}
	}
	last := rs[len(rs)-1]
	if last.InSync || last.HeartbeatAge <= maxLag {
		t.Errorf("%s: last result in sync %v, heartbeat age %v; want out of sync beyond max_lag",
			what, last.InSync, last.HeartbeatAge)
	}
}

// TestHeartbeatIgnoresServerTimeZone runs a primary and its standby in a
// time zone far from the exporter's. The heartbeat is the exporter's clock
// written and read back, so its age is near 0 while replication works and
// grows with the wall clock once it stops, whatever the servers' zone.
func TestHeartbeatIgnoresServerTimeZone(t *testing.T) {
	dbtest.SkipIfMissing(t)
	zone, _, _ := farZone(t)
	ctx := t.Context()
	pair, err := dbtest.StartStreamPair(ctx, func(ctx context.Context, p *dbtest.PG) error {
		return p.SetTimeZone(ctx, zone)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	for _, p := range []*dbtest.PG{pair.Primary, pair.Standby} {
		if got, err := p.TimeZone(ctx, dbtest.EnvDB); err != nil || got != zone {
			t.Fatalf("%s: time zone %q (err %v), want %q", p.Name, got, err, zone)
		}
	}

	writer(t, pair.Primary, dbtest.StreamTable)
	// The exporter creates the table on the primary; the standby receives it.
	s := startStack(t, fmt.Sprintf(`
global: {interval: %s, timeout: %s, max_lag: %s, max_rows: 20}
databases:
  primary: {driver: postgres, dsn: "%s"}
  standby: {driver: postgres, dsn: "%s"}
pairs:
  - name: tz
    left: primary
    right: standby
    directions: [left_to_right]
    selector: select id, created_at as ts from stream_rows order by id desc limit 20
    validator: select count(*) from stream_rows where id = $1
    heartbeat: {table: %s, create: true}
`, interval, timeout, maxLag, pair.Primary.DSN(dbtest.EnvDB), pair.Standby.DSN(dbtest.EnvDB),
		dbtest.HeartbeatTable))
	trail := trailResults(t, s)
	s.waitState(t, "tz", "left_to_right", "in_sync", 15*time.Second)
	healthy := time.Now()
	time.Sleep(3 * interval)
	checkAges(t, "healthy", trail.of("tz", "left_to_right", healthy))

	brokeFrom := time.Now()
	if err := pair.Standby.PauseReplay(ctx); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			pair.Standby.ResumeReplay(context.Background())
		}
	}()
	if err := pair.Standby.WaitInt(ctx, "postgres", 1,
		"select count(*) where pg_get_wal_replay_pause_state() = 'paused'"); err != nil {
		t.Fatal(err)
	}
	brokeAt := time.Now()
	s.waitState(t, "tz", "left_to_right", "out_of_sync", detect+2*time.Second)
	time.Sleep(2 * interval)
	checkBrokenAges(t, "replay paused", trail.of("tz", "left_to_right", brokeAt), brokeFrom, brokeAt)

	if err := pair.Standby.ResumeReplay(ctx); err != nil {
		t.Fatal(err)
	}
	resumed = true
	s.waitState(t, "tz", "left_to_right", "in_sync", detect+5*time.Second)
	healed := time.Now()
	time.Sleep(2 * interval)
	checkAges(t, "resumed", trail.of("tz", "left_to_right", healed))
}

// TestMariaDBHeartbeatIgnoresServerTimeZone is the same on MariaDB: both
// servers of the MariaEnv get a default time zone far from the exporter's
// for the length of the test, and replication stops one way.
func TestMariaDBHeartbeatIgnoresServerTimeZone(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	_, offset, want := farZone(t)
	ctx := t.Context()
	if err := env.CreateHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*dbtest.MariaDB{env.A, env.B} {
		if err := m.SetTimeZone(ctx, offset); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := m.SetTimeZone(context.Background(), "SYSTEM"); err != nil {
				t.Error(err)
			}
		})
		if got, err := m.UTCOffset(ctx); err != nil || got != want {
			t.Fatalf("%s: new sessions are %v ahead of UTC (err %v), want %v", m.Name, got, err, want)
		}
	}

	mariaWriters(t, env)
	s := startStack(t, mariaConfig(env, "", `
  - name: tz
    left: a
    right: b
    heartbeat: {table: `+dbtest.HeartbeatTable+`}
    left_to_right:
      selector: select id, created_at as ts from a_rows order by id desc limit 20
      validator: select count(*) from a_rows where id = ?
    right_to_left:
      selector: select id, created_at as ts from b_rows order by id desc limit 20
      validator: select count(*) from b_rows where id = ?
`))
	trail := trailResults(t, s)
	for _, dir := range mariaDirections {
		s.waitState(t, "tz", dir, "in_sync", 15*time.Second)
	}
	healthy := time.Now()
	time.Sleep(3 * interval)
	for _, dir := range mariaDirections {
		checkAges(t, "healthy "+dir, trail.of("tz", dir, healthy))
	}

	brokeFrom := time.Now()
	if err := env.StopReplication(ctx, dbtest.AToB); err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			env.Heal(context.Background(), dbtest.AToB)
		}
	}()
	brokeAt := time.Now()
	s.waitState(t, "tz", "left_to_right", "out_of_sync", detect+3*time.Second)
	time.Sleep(2 * interval)
	checkBrokenAges(t, "a to b stopped", trail.of("tz", "left_to_right", brokeAt), brokeFrom, brokeAt)
	checkAges(t, "b to a while a to b is stopped", trail.of("tz", "right_to_left", brokeAt))

	if err := env.Heal(ctx, dbtest.AToB); err != nil {
		t.Fatal(err)
	}
	healed = true
	s.waitState(t, "tz", "left_to_right", "in_sync", detect+5*time.Second)
	resumed := time.Now()
	time.Sleep(2 * interval)
	checkAges(t, "restarted", trail.of("tz", "left_to_right", resumed))
}
