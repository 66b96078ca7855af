package collector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
)

const testHeartbeatTable = "spengler_heartbeat"

// beatDB is a fakeDB with row versions, whose heartbeat writes can be
// refused. Its heartbeat table changes only when the test says so: what is
// written on one beatDB reaches another through copyBeats.
type beatDB struct {
	*fakeDB

	vmu sync.Mutex
	// versions holds the version of each row; nil means the selector has
	// no version column.
	versions map[string]string
	hbErr    error // returned for every request with a heartbeat
}

func newBeatDB() *beatDB { return &beatDB{fakeDB: newFakeDB()} }

func (b *beatDB) Do(ctx context.Context, req db.Request) (db.Response, error) {
	b.vmu.Lock()
	defer b.vmu.Unlock()
	if req.Heartbeat != nil && b.hbErr != nil {
		b.fakeDB.mu.Lock()
		b.fakeDB.requests = append(b.fakeDB.requests, req)
		b.fakeDB.mu.Unlock()
		return db.Response{}, b.hbErr
	}
	resp, err := b.fakeDB.Do(ctx, req)
	if err != nil || b.versions == nil {
		return resp, err
	}
	resp.Versions = req.Select != nil
	for i := range resp.Rows {
		resp.Rows[i].Version = b.versions[resp.Rows[i].ID]
	}
	if req.Probe != nil && req.Probe.Versions {
		for i, id := range req.Probe.IDs {
			if resp.Answers[i].Present {
				resp.Answers[i].Version = b.versions[id]
			}
		}
	}
	return resp, nil
}

// copyBeats replicates the heartbeat table of b to dst.
func (b *beatDB) copyBeats(dst *beatDB) {
	b.fakeDB.mu.Lock()
	rows := maps.Clone(b.fakeDB.heartbeats)
	b.fakeDB.mu.Unlock()
	for origin, us := range rows {
		dst.setHeartbeat(origin, us)
	}
}

func (b *beatDB) setVersion(id, version string) {
	b.vmu.Lock()
	defer b.vmu.Unlock()
	b.versions[id] = version
}

// heartbeatRequests returns the heartbeat part of every request b got.
func (b *beatDB) heartbeatRequests() []db.Heartbeat {
	b.fakeDB.mu.Lock()
	defer b.fakeDB.mu.Unlock()
	var out []db.Heartbeat
	for _, req := range b.fakeDB.requests {
		if req.Heartbeat != nil {
			out = append(out, *req.Heartbeat)
		}
	}
	return out
}

// beatHarness is one direction, east to west, between two beatDBs on a fake
// clock.
type beatHarness struct {
	clock    *fakeClock
	src, tgt *beatDB
	dir      *direction
	nextID   int
}

// newBeatHarness builds a heartbeat-only direction; edit changes its
// configuration first.
func newBeatHarness(t *testing.T, edit func(*config.Direction)) *beatHarness {
	t.Helper()
	h := &beatHarness{clock: newFakeClock(), src: newBeatDB(), tgt: newBeatDB()}
	cfg := config.Direction{
		Pair: "orders", Name: config.LeftToRight, Source: "east", Target: "west",
		Interval: 10 * time.Second, Timeout: 5 * time.Second, MaxLag: testMaxLag, MaxRows: 5,
		Heartbeat: &config.Heartbeat{Table: testHeartbeatTable},
	}
	if edit != nil {
		edit(&cfg)
	}
	h.dir = newDirection(cfg, &database{name: "east", conn: h.src},
		&database{name: "west", conn: h.tgt}, h.clock, func(s string) string { return s })
	return h
}

// withData gives the direction a selector and validator too.
func withData(c *config.Direction) {
	c.Selector = "select id"
	c.Validator = "select count(*) where id = $1"
}

// withVersions gives the direction data checks and both sides a version
// column, without a heartbeat.
func withVersions(c *config.Direction) {
	withData(c)
	c.Heartbeat = nil
}

func (h *beatHarness) check(t *testing.T) *Result {
	t.Helper()
	return h.dir.check(context.Background())
}

// replicate brings the target's heartbeat table up to date with the source's.
func (h *beatHarness) replicate() { h.src.copyBeats(h.tgt) }

// write adds a row on the source, and on the target too when replicated.
func (h *beatHarness) write(replicated bool) string {
	h.nextID++
	id := fmt.Sprint(h.nextID)
	h.src.add(id, time.Time{})
	if replicated {
		h.tgt.add(id, time.Time{})
	}
	return id
}

// writeVersion adds a row with a version on the source, and on the target
// with the same version when replicated.
func (h *beatHarness) writeVersion(version string, replicated bool) string {
	id := h.write(replicated)
	h.src.setVersion(id, version)
	if replicated {
		h.tgt.setVersion(id, version)
	}
	return id
}

func TestHeartbeatWritesOnSourceReadsOnTarget(t *testing.T) {
	h := newBeatHarness(t, func(c *config.Direction) { c.Heartbeat.Create = true })
	h.check(t)
	want := []db.Heartbeat{{Table: testHeartbeatTable, Origin: "orders:east",
		WriteUS: h.clock.Now().UnixMicro(), Create: true}}
	if diff := cmp.Diff(want, h.src.heartbeatRequests()); diff != "" {
		t.Errorf("source heartbeat requests (-want +got):\n%s", diff)
	}
	// The target is only read, and never asked to create anything.
	want = []db.Heartbeat{{Table: testHeartbeatTable, Origin: "orders:east"}}
	if diff := cmp.Diff(want, h.tgt.heartbeatRequests()); diff != "" {
		t.Errorf("target heartbeat requests (-want +got):\n%s", diff)
	}
	for side, f := range map[string]*beatDB{"source": h.src, "target": h.tgt} {
		if req := f.lastRequest(); req.Select != nil || req.Probe != nil {
			t.Errorf("%s: a heartbeat-only direction sent data queries: %+v", side, req)
		}
	}
}

func TestHeartbeatNotFoundYet(t *testing.T) {
	h := newBeatHarness(t, nil)
	r := h.check(t)
	if r.InSync || r.State != StateOutOfSync || !r.Success || r.HeartbeatFound ||
		!strings.Contains(r.Reason, "heartbeat of orders:east not found on the target yet") {
		t.Fatalf("got %+v, want out of sync until the heartbeat is found", r)
	}
	if !r.Heartbeat || r.DataChecks || r.HeartbeatAge != 0 {
		t.Errorf("heartbeat %v, data checks %v, age %v; want true, false, 0",
			r.Heartbeat, r.DataChecks, r.HeartbeatAge)
	}
	// Until one is found, the age counts from the first heartbeat written.
	h.clock.Advance(30 * time.Second)
	r = h.check(t)
	if r.HeartbeatAge != 30*time.Second || r.Lag != 30*time.Second || r.InSync {
		t.Errorf("age %v lag %v in_sync %v, want 30s 30s false", r.HeartbeatAge, r.Lag, r.InSync)
	}
}

func TestHeartbeatOnlyInSync(t *testing.T) {
	h := newBeatHarness(t, nil)
	h.check(t)
	h.replicate()
	h.clock.Advance(2 * time.Second)
	r := h.check(t)
	if !r.InSync || r.State != StateInSync || !r.HeartbeatFound {
		t.Fatalf("got %+v, want in sync once the heartbeat arrived", r)
	}
	// The age is the exporter's clock minus the heartbeat found: the one
	// written 2s ago, not the one written by this check.
	if r.HeartbeatAge != 2*time.Second || r.Lag != 2*time.Second {
		t.Errorf("age %v lag %v, want 2s for both", r.HeartbeatAge, r.Lag)
	}
	if !r.LastInSync.Equal(h.clock.Now()) || r.RowsSelected != 0 {
		t.Errorf("last in sync %v rows selected %d, want now and 0", r.LastInSync, r.RowsSelected)
	}
}

func TestHeartbeatStaleIsOutOfSync(t *testing.T) {
	h := newBeatHarness(t, nil)
	h.check(t)
	h.replicate()
	// Replication stops: the target keeps the heartbeat written at the start.
	h.clock.Advance(testMaxLag)
	if r := h.check(t); !r.InSync || r.HeartbeatAge != testMaxLag {
		t.Fatalf("age %v in_sync %v: exactly max_lag old is still in sync", r.HeartbeatAge, r.InSync)
	}
	h.clock.Advance(time.Second)
	r := h.check(t)
	want := "heartbeat on the target is 1m1s old, more than max_lag (1m0s)"
	if r.InSync || r.State != StateOutOfSync || r.Reason != want || !r.Success {
		t.Fatalf("got state %q reason %q, want out of sync with %q", r.State, r.Reason, want)
	}
	if r.Lag != testMaxLag+time.Second || r.HeartbeatAge != r.Lag {
		t.Errorf("lag %v age %v, want both 1m1s", r.Lag, r.HeartbeatAge)
	}
	h.clock.Advance(10 * time.Second)
	if r := h.check(t); r.HeartbeatAge != testMaxLag+11*time.Second {
		t.Errorf("age %v, want it to keep growing", r.HeartbeatAge)
	}

	h.replicate() // healed: the newest heartbeat arrives
	h.clock.Advance(time.Second)
	r = h.check(t)
	if !r.InSync || r.HeartbeatAge != time.Second || r.Lag != time.Second {
		t.Errorf("after healing: %+v, want in sync with age 1s", r)
	}
}

func TestHeartbeatFromTheFutureHasAgeZero(t *testing.T) {
	h := newBeatHarness(t, nil)
	h.tgt.setHeartbeat("orders:east", h.clock.Now().Add(time.Hour).UnixMicro())
	r := h.check(t)
	if r.HeartbeatAge != 0 || r.Lag != 0 || !r.InSync {
		t.Errorf("age %v lag %v in_sync %v, want 0 0 true: an age is never negative",
			r.HeartbeatAge, r.Lag, r.InSync)
	}
}

func TestHeartbeatAgeGrowsWhileTargetFails(t *testing.T) {
	h := newBeatHarness(t, nil)
	h.check(t)
	h.replicate()
	h.check(t)
	h.tgt.fail(&db.Error{Stage: db.StageConnect, Unreachable: true, Err: errors.New("refused")})
	h.clock.Advance(90 * time.Second)
	r := h.check(t)
	if r.State != StateError || r.Success || r.InSync {
		t.Fatalf("got %+v, want an error", r)
	}
	if r.HeartbeatAge != 90*time.Second || r.Lag != 90*time.Second || !r.HeartbeatFound {
		t.Errorf("age %v lag %v found %v, want 1m30s 1m30s true: the last heartbeat seen "+
			"keeps ageing", r.HeartbeatAge, r.Lag, r.HeartbeatFound)
	}
	// Back, but nothing new arrived: out of sync by the old heartbeat.
	h.tgt.fail(nil)
	h.clock.Advance(time.Second)
	r = h.check(t)
	if r.State != StateOutOfSync || r.HeartbeatAge != 91*time.Second {
		t.Errorf("state %q age %v, want out of sync and 1m31s", r.State, r.HeartbeatAge)
	}
}

func TestHeartbeatWriteRefused(t *testing.T) {
	h := newBeatHarness(t, nil)
	h.src.hbErr = &db.Error{Stage: db.StageHeartbeat,
		Err: errors.New(`permission denied for table spengler_heartbeat`)}
	r := h.check(t)
	want := `source "east": heartbeat: permission denied for table spengler_heartbeat`
	if r.State != StateError || r.Error != want || r.Reason != want {
		t.Fatalf("state %q error %q, want an error %q", r.State, r.Error, want)
	}
	if r.HeartbeatFound || r.HeartbeatAge != 0 || len(h.tgt.heartbeatRequests()) != 0 {
		t.Errorf("found %v age %v target asked %d times: nothing was written, nothing to read",
			r.HeartbeatFound, r.HeartbeatAge, len(h.tgt.heartbeatRequests()))
	}
	// Still refused later: the age does not count from a write that failed.
	h.clock.Advance(5 * time.Minute)
	if r := h.check(t); r.State != StateError || r.HeartbeatAge != 0 {
		t.Errorf("state %q age %v, want an error and age 0", r.State, r.HeartbeatAge)
	}
}

func TestHeartbeatWithDataChecks(t *testing.T) {
	type step struct {
		replicateBeat bool // the heartbeat written now arrives
		rowReplicated *bool
		advance       time.Duration
	}
	yes, no := true, false
	cases := []struct {
		name        string
		steps       []step
		state       State
		reason      string
		lag, age    time.Duration
		rowsMissing int
	}{
		{
			name:  "both in sync",
			steps: []step{{true, &yes, 0}, {false, nil, 3 * time.Second}},
			state: StateInSync, lag: 3 * time.Second, age: 3 * time.Second,
		},
		{
			// The data look fine (nothing new written), the link is not.
			name:  "idle source, heartbeat stale",
			steps: []step{{true, &yes, 0}, {false, nil, testMaxLag + 5*time.Second}},
			state: StateOutOfSync, reason: "heartbeat on the target is 1m5s old",
			lag: testMaxLag + 5*time.Second, age: testMaxLag + 5*time.Second,
		},
		{
			// A row is missing while heartbeats arrive (a filtered table).
			name: "heartbeat fine, row missing",
			steps: []step{{true, &yes, 0}, {true, &no, 0},
				{true, nil, 20 * time.Second}, {true, nil, 20 * time.Second},
				{true, nil, 21 * time.Second}},
			state: StateOutOfSync, reason: "1 rows not on the target after max_lag",
			lag: 61 * time.Second, age: 21 * time.Second, rowsMissing: 1,
		},
		{
			name:  "row in flight is older than the heartbeat",
			steps: []step{{true, &yes, 0}, {true, &no, 0}, {true, nil, 20 * time.Second}, {false, nil, 5 * time.Second}},
			state: StateInSync, lag: 25 * time.Second, age: 5 * time.Second,
		},
		{
			name:  "heartbeat not found, data in sync",
			steps: []step{{false, &yes, 0}},
			state: StateOutOfSync, reason: "heartbeat of orders:east not found on the target yet",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newBeatHarness(t, withData)
			var r *Result
			for _, s := range tc.steps {
				h.clock.Advance(s.advance)
				if s.rowReplicated != nil {
					h.write(*s.rowReplicated)
				}
				r = h.check(t)
				if s.replicateBeat {
					h.replicate()
				}
			}
			if r.State != tc.state || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("state %q reason %q, want %q with %q", r.State, r.Reason, tc.state, tc.reason)
			}
			if r.Lag != tc.lag || r.HeartbeatAge != tc.age || r.RowsMissing != tc.rowsMissing {
				t.Errorf("lag %v age %v missing %d, want %v %v %d: lag is the larger of the "+
					"heartbeat age and the oldest pending row", r.Lag, r.HeartbeatAge,
					r.RowsMissing, tc.lag, tc.age, tc.rowsMissing)
			}
			if !r.DataChecks || !r.Heartbeat || !r.Success {
				t.Errorf("data checks %v heartbeat %v success %v, want all true",
					r.DataChecks, r.Heartbeat, r.Success)
			}
		})
	}
}

// beatEngine is an engine on a fake clock whose databases are beatDBs.
func beatEngine(t *testing.T, cfg *config.Config, fakes map[string]*beatDB, clock Clock) *Engine {
	t.Helper()
	e := New(Options{Clock: clock, Open: func(c *config.Database, _ time.Duration) (db.DB, error) {
		return fakes[c.Name], nil
	}})
	t.Cleanup(e.Close)
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestHeartbeatOriginPerDirection(t *testing.T) {
	cfg := testConfig()
	for i := range cfg.Pairs[0].Checks {
		cfg.Pairs[0].Checks[i].Heartbeat = &config.Heartbeat{Table: testHeartbeatTable}
	}
	east, west := newBeatDB(), newBeatDB()
	for _, f := range []*beatDB{east, west} {
		f.add("1", time.Time{})
	}
	e := beatEngine(t, cfg, map[string]*beatDB{"east": east, "west": west}, newFakeClock())
	e.CheckAll(context.Background())

	// Each side writes its own origin and reads the other's.
	for name, f := range map[string]*beatDB{"east": east, "west": west} {
		other := map[string]string{"east": "west", "west": "east"}[name]
		var wrote, read []string
		for _, hb := range f.heartbeatRequests() {
			if hb.Table != testHeartbeatTable {
				t.Errorf("%s: heartbeat on table %q", name, hb.Table)
			}
			if hb.WriteUS != 0 {
				wrote = append(wrote, hb.Origin)
			} else {
				read = append(read, hb.Origin)
			}
		}
		if diff := cmp.Diff([]string{"orders:" + name}, wrote); diff != "" {
			t.Errorf("%s wrote (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff([]string{"orders:" + other}, read); diff != "" {
			t.Errorf("%s read (-want +got):\n%s", name, diff)
		}
	}
}

func TestExporterHeartbeatAge(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig()
	cfg.Pairs[0].Checks[0].Heartbeat = &config.Heartbeat{Table: testHeartbeatTable}
	east, west := newBeatDB(), newBeatDB()
	for _, f := range []*beatDB{east, west} {
		f.add("1", time.Time{})
	}
	e := beatEngine(t, cfg, map[string]*beatDB{"east": east, "west": west}, clock)
	e.CheckAll(context.Background())
	east.copyBeats(west)
	clock.Advance(1500 * time.Millisecond)
	e.CheckAll(context.Background())

	// Only the direction with a heartbeat has the gauge; its lag is the age.
	want := `
# HELP spengler_replication_heartbeat_age_seconds Exporter clock minus the heartbeat found on the target (until one is found, the time since the first was written), as of the last background check; only for directions with a heartbeat.
# TYPE spengler_replication_heartbeat_age_seconds gauge
spengler_replication_heartbeat_age_seconds{direction="left_to_right",pair="orders",source="east",target="west"} 1.5
# HELP spengler_replication_lag_seconds Age of the oldest row seen on the source and not yet on the target, as of the last background check; 0 when none is pending.
# TYPE spengler_replication_lag_seconds gauge
spengler_replication_lag_seconds{direction="left_to_right",pair="orders",source="east",target="west"} 1.5
spengler_replication_lag_seconds{direction="right_to_left",pair="orders",source="west",target="east"} 0
# HELP spengler_replication_in_sync 1 when the last background check proved the direction in sync, else 0.
# TYPE spengler_replication_in_sync gauge
spengler_replication_in_sync{direction="left_to_right",pair="orders",source="east",target="west"} 1
spengler_replication_in_sync{direction="right_to_left",pair="orders",source="west",target="east"} 1
`
	x := NewExporter(e)
	if err := testutil.CollectAndCompare(x, strings.NewReader(want),
		"spengler_replication_heartbeat_age_seconds", "spengler_replication_lag_seconds",
		"spengler_replication_in_sync"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(x)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

func TestVersionsEqualAreInSync(t *testing.T) {
	h := newBeatHarness(t, withVersions)
	h.src.versions, h.tgt.versions = map[string]string{}, map[string]string{}
	h.writeVersion("a", true)
	h.writeVersion("b", true)
	r := h.check(t)
	if !r.InSync || r.RowsDivergent != 0 || len(r.DivergentIDs) != 0 {
		t.Fatalf("got %+v, want in sync with no divergent rows", r)
	}
	if p := h.tgt.lastRequest().Probe; p == nil || !p.Versions {
		t.Errorf("target probe %+v, want a probe of versions", p)
	}
}

func TestVersionDivergentAfterMaxLag(t *testing.T) {
	h := newBeatHarness(t, withVersions)
	h.src.versions, h.tgt.versions = map[string]string{}, map[string]string{}
	h.writeVersion("v1", true)
	id := h.writeVersion("v1", true)
	h.check(t)

	h.tgt.setVersion(id, "changed on the target")
	if r := h.check(t); !r.InSync || r.RowsDivergent != 0 {
		t.Fatalf("got %+v, want in sync: a difference is given max_lag to settle", r)
	}
	h.clock.Advance(testMaxLag)
	if r := h.check(t); !r.InSync || r.RowsDivergent != 0 {
		t.Fatalf("got %+v after exactly max_lag, want still in sync", r)
	}
	h.clock.Advance(time.Second)
	r := h.check(t)
	if r.InSync || r.State != StateOutOfSync || r.RowsDivergent != 1 ||
		r.Reason != "1 rows differ on the target after max_lag (1m0s)" {
		t.Fatalf("got %+v, want one divergent row", r)
	}
	if diff := cmp.Diff([]string{id}, r.DivergentIDs); diff != "" {
		t.Errorf("DivergentIDs (-want +got):\n%s", diff)
	}
	if r.RowsMissing != 0 || r.Pending != 0 || r.Lag != 0 {
		t.Errorf("missing %d pending %d lag %v: a divergent row is there, not missing",
			r.RowsMissing, r.Pending, r.Lag)
	}

	h.tgt.setVersion(id, "v1") // restored
	if r := h.check(t); !r.InSync || r.RowsDivergent != 0 || len(r.DivergentIDs) != 0 {
		t.Fatalf("got %+v after restoring the row, want in sync", r)
	}
	// Differing again starts a new wait of max_lag.
	h.tgt.setVersion(id, "changed again")
	h.check(t)
	h.clock.Advance(testMaxLag)
	if r := h.check(t); r.RowsDivergent != 0 {
		t.Errorf("divergent %d, want 0: the earlier difference must not count", r.RowsDivergent)
	}
}

func TestVersionReplicatedUpdatesNeverDivergent(t *testing.T) {
	h := newBeatHarness(t, withVersions)
	h.src.versions, h.tgt.versions = map[string]string{}, map[string]string{}
	id := h.writeVersion("v0", true)
	h.check(t)
	// Updated again and again, each update arriving within max_lag: the row
	// differs at most checks, for longer than max_lag in all.
	for i := range 5 {
		v := fmt.Sprint("v", i+1)
		h.src.setVersion(id, v)
		h.clock.Advance(10 * time.Second)
		if r := h.check(t); r.RowsDivergent != 0 || !r.InSync {
			t.Fatalf("update %d, before it arrived: %+v, want in sync", i+1, r)
		}
		h.tgt.setVersion(id, v)
		h.clock.Advance(40 * time.Second)
		if r := h.check(t); r.RowsDivergent != 0 || !r.InSync {
			t.Fatalf("update %d, arrived: %+v, want in sync", i+1, r)
		}
	}
}

func TestVersionAbsentRowIsMissingNotDivergent(t *testing.T) {
	h := newBeatHarness(t, withVersions)
	h.src.versions, h.tgt.versions = map[string]string{}, map[string]string{}
	h.writeVersion("v", true)
	h.check(t)
	id := h.writeVersion("v", false)
	h.check(t)
	h.clock.Advance(testMaxLag + time.Second)
	r := h.check(t)
	if r.RowsDivergent != 0 || r.RowsMissing != 1 || !cmp.Equal(r.MissingIDs, []string{id}) {
		t.Errorf("divergent %d missing %v, want 0 and [%s]", r.RowsDivergent, r.MissingIDs, id)
	}
}

func TestVersionRowLeavingSelectionIsForgotten(t *testing.T) {
	h := newBeatHarness(t, withVersions)
	h.src.versions, h.tgt.versions = map[string]string{}, map[string]string{}
	id := h.writeVersion("v", true)
	h.tgt.setVersion(id, "other")
	h.check(t)
	for range 5 { // max_rows is 5
		h.writeVersion("v", true)
	}
	h.clock.Advance(testMaxLag + time.Second)
	r := h.check(t)
	if r.RowsDivergent != 0 || !r.InSync || len(h.dir.diverged) != 0 {
		t.Errorf("divergent %d in_sync %v remembered %v, want a row no longer selected forgotten",
			r.RowsDivergent, r.InSync, h.dir.diverged)
	}
}

func TestVersionDivergentIDsOrderedAndCapped(t *testing.T) {
	h := newBeatHarness(t, func(c *config.Direction) {
		withVersions(c)
		c.MaxRows = 20
	})
	h.src.versions, h.tgt.versions = map[string]string{}, map[string]string{}
	var ids []string
	for range 12 {
		ids = append(ids, h.writeVersion("v", true))
	}
	for _, id := range ids[:6] {
		h.tgt.setVersion(id, "x")
	}
	h.check(t)
	h.clock.Advance(10 * time.Second)
	for _, id := range ids[6:] {
		h.tgt.setVersion(id, "x")
	}
	h.check(t)
	h.clock.Advance(testMaxLag + time.Second)
	r := h.check(t)
	if r.RowsDivergent != 12 {
		t.Fatalf("divergent %d, want all 12 counted", r.RowsDivergent)
	}
	// Longest divergent first, then by id; at most maxListedIDs listed.
	want := []string{"1", "2", "3", "4", "5", "6", "10", "11", "12", "7"}
	if diff := cmp.Diff(want, r.DivergentIDs); diff != "" {
		t.Errorf("DivergentIDs (-want +got):\n%s", diff)
	}
}

func TestVersionsNeedAVersionColumn(t *testing.T) {
	h := newBeatHarness(t, withVersions)
	h.tgt.versions = map[string]string{} // only the target has versions
	id := h.write(true)
	h.tgt.setVersion(id, "x")
	h.check(t)
	h.clock.Advance(testMaxLag + time.Second)
	r := h.check(t)
	if r.RowsDivergent != 0 || !r.InSync {
		t.Errorf("got %+v, want no content check without a version column on the source", r)
	}
	if p := h.tgt.lastRequest().Probe; p == nil || p.Versions {
		t.Errorf("target probe %+v, want a probe of counts", p)
	}
}
