package collector

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
)

// testConfig is one pair between east and west, both directions.
func testConfig() *config.Config {
	dir := func(name, src, tgt string) config.Direction {
		return config.Direction{
			Pair: "orders", Name: name, Source: src, Target: tgt,
			Selector: "select id", Validator: "select count(*) where id = $1",
			Interval: time.Second, Timeout: time.Second, MaxLag: time.Minute, MaxRows: 10,
		}
	}
	return &config.Config{
		Databases: map[string]*config.Database{
			"east": {Name: "east", Driver: config.DriverPostgres, DSN: "postgres://east"},
			"west": {Name: "west", Driver: config.DriverPostgres, DSN: "postgres://west"},
		},
		Pairs: []*config.Pair{{Name: "orders", Left: "east", Right: "west", Checks: []config.Direction{
			dir(config.LeftToRight, "east", "west"), dir(config.RightToLeft, "west", "east"),
		}}},
	}
}

// fakeEngine is an engine whose databases are fakes on a fake clock.
func fakeEngine(t *testing.T, fakes map[string]*fakeDB, clock Clock) *Engine {
	t.Helper()
	e := New(Options{Clock: clock, Open: func(cfg *config.Database, _ time.Duration) (db.DB, error) {
		return fakes[cfg.Name], nil
	}})
	t.Cleanup(e.Close)
	if err := e.Apply(testConfig()); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExporterGolden(t *testing.T) {
	clock := newFakeClock()
	east, west := newFakeDB(), newFakeDB()
	east.add("1", time.Time{})
	west.add("1", time.Time{})
	west.add("9", time.Time{})
	east.fail(&db.Error{Stage: db.StageValidate, Unreachable: true, Err: errors.New("refused")})
	e := fakeEngine(t, map[string]*fakeDB{"east": east, "west": west}, clock)

	e.CheckAll(context.Background())

	want := `
# HELP spengler_check_success 1 when the last background check ran without error, else 0.
# TYPE spengler_check_success gauge
spengler_check_success{direction="left_to_right",pair="orders",source="east",target="west"} 0
spengler_check_success{direction="right_to_left",pair="orders",source="west",target="east"} 0
# HELP spengler_checks_total Background checks by result: in_sync, out_of_sync or error.
# TYPE spengler_checks_total counter
spengler_checks_total{direction="left_to_right",pair="orders",result="error",source="east",target="west"} 1
spengler_checks_total{direction="left_to_right",pair="orders",result="in_sync",source="east",target="west"} 0
spengler_checks_total{direction="left_to_right",pair="orders",result="out_of_sync",source="east",target="west"} 0
spengler_checks_total{direction="right_to_left",pair="orders",result="error",source="west",target="east"} 1
spengler_checks_total{direction="right_to_left",pair="orders",result="in_sync",source="west",target="east"} 0
spengler_checks_total{direction="right_to_left",pair="orders",result="out_of_sync",source="west",target="east"} 0
# HELP spengler_database_up 1 when the database answered the last time a check used it, else 0.
# TYPE spengler_database_up gauge
spengler_database_up{database="east"} 0
spengler_database_up{database="west"} 1
# HELP spengler_replication_in_sync 1 when the last background check proved the direction in sync, else 0.
# TYPE spengler_replication_in_sync gauge
spengler_replication_in_sync{direction="left_to_right",pair="orders",source="east",target="west"} 0
spengler_replication_in_sync{direction="right_to_left",pair="orders",source="west",target="east"} 0
# HELP spengler_replication_lag_seconds Age of the oldest row seen on the source and not yet on the target, as of the last background check; 0 when none is pending.
# TYPE spengler_replication_lag_seconds gauge
spengler_replication_lag_seconds{direction="left_to_right",pair="orders",source="east",target="west"} 0
spengler_replication_lag_seconds{direction="right_to_left",pair="orders",source="west",target="east"} 0
# HELP spengler_replication_rows_checked Ids the last background check asked the target about.
# TYPE spengler_replication_rows_checked gauge
spengler_replication_rows_checked{direction="left_to_right",pair="orders",source="east",target="west"} 0
spengler_replication_rows_checked{direction="right_to_left",pair="orders",source="west",target="east"} 0
# HELP spengler_replication_rows_divergent Rows whose version on the target has differed from the source's for longer than max_lag, as of the last background check; 0 without content checks.
# TYPE spengler_replication_rows_divergent gauge
spengler_replication_rows_divergent{direction="left_to_right",pair="orders",source="east",target="west"} 0
spengler_replication_rows_divergent{direction="right_to_left",pair="orders",source="west",target="east"} 0
# HELP spengler_replication_rows_pending Ids seen on the source and not yet on the target, as of the last background check.
# TYPE spengler_replication_rows_pending gauge
spengler_replication_rows_pending{direction="left_to_right",pair="orders",source="east",target="west"} 0
spengler_replication_rows_pending{direction="right_to_left",pair="orders",source="west",target="east"} 2
`
	names := []string{
		"spengler_check_success", "spengler_checks_total", "spengler_database_up",
		"spengler_replication_in_sync", "spengler_replication_lag_seconds",
		"spengler_replication_rows_checked", "spengler_replication_rows_pending",
		"spengler_replication_rows_divergent", "spengler_replication_heartbeat_age_seconds",
	}
	x := NewExporter(e)
	if err := testutil.CollectAndCompare(x, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(x)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(x)
	if _, err := reg.Gather(); err != nil {
		t.Errorf("pedantic registry: %v", err)
	}
}

func TestExporterInSyncValues(t *testing.T) {
	clock := newFakeClock()
	east, west := newFakeDB(), newFakeDB()
	for _, id := range []string{"1", "2"} {
		east.add(id, time.Time{})
		west.add(id, time.Time{})
	}
	west.add("w1", time.Time{})
	e := fakeEngine(t, map[string]*fakeDB{"east": east, "west": west}, clock)
	e.CheckAll(context.Background())

	want := `
# HELP spengler_replication_in_sync 1 when the last background check proved the direction in sync, else 0.
# TYPE spengler_replication_in_sync gauge
spengler_replication_in_sync{direction="left_to_right",pair="orders",source="east",target="west"} 1
spengler_replication_in_sync{direction="right_to_left",pair="orders",source="west",target="east"} 1
# HELP spengler_replication_last_in_sync_timestamp_seconds Unix time of the last background check that found the direction in sync; 0 if none.
# TYPE spengler_replication_last_in_sync_timestamp_seconds gauge
spengler_replication_last_in_sync_timestamp_seconds{direction="left_to_right",pair="orders",source="east",target="west"} 1.767323045e+09
spengler_replication_last_in_sync_timestamp_seconds{direction="right_to_left",pair="orders",source="west",target="east"} 1.767323045e+09
# HELP spengler_check_last_run_timestamp_seconds Unix time the last background check finished.
# TYPE spengler_check_last_run_timestamp_seconds gauge
spengler_check_last_run_timestamp_seconds{direction="left_to_right",pair="orders",source="east",target="west"} 1.767323045e+09
spengler_check_last_run_timestamp_seconds{direction="right_to_left",pair="orders",source="west",target="east"} 1.767323045e+09
# HELP spengler_replication_rows_missing Ids still not on the target after max_lag, as of the last background check.
# TYPE spengler_replication_rows_missing gauge
spengler_replication_rows_missing{direction="left_to_right",pair="orders",source="east",target="west"} 0
spengler_replication_rows_missing{direction="right_to_left",pair="orders",source="west",target="east"} 0
`
	err := testutil.CollectAndCompare(NewExporter(e), strings.NewReader(want),
		"spengler_replication_in_sync", "spengler_replication_last_in_sync_timestamp_seconds",
		"spengler_check_last_run_timestamp_seconds", "spengler_replication_rows_missing")
	if err != nil {
		t.Error(err)
	}
}

func TestExporterNoSeriesBeforeFirstCheck(t *testing.T) {
	e := fakeEngine(t, map[string]*fakeDB{"east": newFakeDB(), "west": newFakeDB()}, newFakeClock())
	if n := testutil.CollectAndCount(NewExporter(e)); n != 0 {
		t.Errorf("got %d series before any check, want 0", n)
	}
}
