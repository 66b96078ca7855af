package collector

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
)

// slowDB is a fake database that takes a while to answer and counts how many
// requests it serves at once, per selector query and in all.
type slowDB struct {
	fakeDB
	delay   time.Duration
	mu      sync.Mutex
	running map[string]int
	maxPer  int
	total   atomic.Int32
	maxAll  atomic.Int32
}

func newSlowDB(delay time.Duration) *slowDB {
	s := &slowDB{fakeDB: *newFakeDB(), delay: delay, running: map[string]int{}}
	s.add("1", time.Time{})
	return s
}

func (s *slowDB) Do(ctx context.Context, req db.Request) (db.Response, error) {
	key := ""
	if req.Select != nil {
		key = req.Select.Query
	} else if req.Probe != nil {
		key = req.Probe.Query
	}
	s.mu.Lock()
	s.running[key]++
	s.maxPer = max(s.maxPer, s.running[key])
	s.mu.Unlock()
	n := s.total.Add(1)
	for {
		m := s.maxAll.Load()
		if n <= m || s.maxAll.CompareAndSwap(m, n) {
			break
		}
	}
	defer func() {
		s.total.Add(-1)
		s.mu.Lock()
		s.running[key]--
		s.mu.Unlock()
	}()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return db.Response{}, &db.Error{Stage: db.StageSelect, Unreachable: true, Err: ctx.Err()}
	}
	return s.fakeDB.Do(ctx, req)
}

// manyPairs is n pairs between east and west, left_to_right only, each with
// its own selector so that the fake can tell them apart.
func manyPairs(n int, interval time.Duration) *config.Config {
	cfg := testConfig()
	cfg.Pairs = nil
	for i := range n {
		name := fmt.Sprintf("p%03d", i)
		cfg.Pairs = append(cfg.Pairs, &config.Pair{Name: name, Checks: []config.Direction{{
			Pair: name, Name: config.LeftToRight, Source: "east", Target: "west",
			Selector: "select " + name, Validator: "v " + name + " $1",
			Interval: interval, Timeout: time.Second, MaxLag: time.Minute, MaxRows: 10,
		}}})
	}
	return cfg
}

func TestEngineChecksNeverOverlap(t *testing.T) {
	slow := newSlowDB(120 * time.Millisecond)
	e := New(Options{Open: func(*config.Database, time.Duration) (db.DB, error) { return slow, nil }})
	defer e.Close()
	if err := e.Apply(manyPairs(3, 20*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	e.Start()
	waitFor(t, 5*time.Second, func() bool {
		for _, r := range e.Results() {
			if r.Checks[StateInSync] < 3 {
				return false
			}
		}
		return len(e.Results()) == 3
	})
	e.Close()
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if slow.maxPer != 1 {
		t.Errorf("a direction's selector ran %d times at once, want never more than 1", slow.maxPer)
	}
}

func TestEngineConcurrencyLimit(t *testing.T) {
	slow := newSlowDB(30 * time.Millisecond)
	e := New(Options{Concurrency: 2,
		Open: func(*config.Database, time.Duration) (db.DB, error) { return slow, nil }})
	defer e.Close()
	if err := e.Apply(manyPairs(10, time.Hour)); err != nil {
		t.Fatal(err)
	}
	results := e.CheckAll(context.Background())
	for _, r := range results {
		if !r.InSync {
			t.Errorf("%s: %s", r.Pair, r.Reason)
		}
	}
	if got := slow.maxAll.Load(); got != 2 {
		t.Errorf("%d requests ran at once, want exactly the limit 2", got)
	}
}

func TestEngineApplyKeepsUnchangedDirections(t *testing.T) {
	clock := newFakeClock()
	east, west, west2 := newFakeDB(), newFakeDB(), newFakeDB()
	for _, f := range []*fakeDB{east, west, west2} {
		f.add("1", time.Time{})
	}
	opened := map[string]int{}
	e := New(Options{Clock: clock, Open: func(cfg *config.Database, _ time.Duration) (db.DB, error) {
		opened[cfg.Name]++
		if cfg.DSN == "postgres://west-2" {
			return west2, nil
		}
		return map[string]*fakeDB{"east": east, "west": west}[cfg.Name], nil
	}})
	defer e.Close()
	cfg := testConfig()
	cfg.Databases["spare"] = &config.Database{Name: "spare", Driver: config.DriverPostgres,
		DSN: "postgres://spare"}
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if opened["spare"] != 0 {
		t.Errorf("a database no pair names was opened")
	}
	e.CheckAll(context.Background())

	next := testConfig()
	next.Pairs[0].Checks[1].MaxRows = 20 // right_to_left changes
	if err := e.Apply(next); err != nil {
		t.Fatal(err)
	}
	st := e.Status()
	if len(st) != 2 {
		t.Fatalf("got %d directions, want 2", len(st))
	}
	if st[0].Latest == nil || st[0].Latest.Checks[StateInSync] != 1 {
		t.Errorf("unchanged left_to_right lost its state: %+v", st[0].Latest)
	}
	if st[1].Latest != nil {
		t.Errorf("changed right_to_left kept its old state: %+v", st[1].Latest)
	}
	if opened["east"] != 1 || opened["west"] != 1 {
		t.Errorf("databases opened %v, want each once: unchanged pools are kept", opened)
	}

	next = testConfig()
	next.Databases["west"] = &config.Database{Name: "west", Driver: config.DriverPostgres,
		DSN: "postgres://west-2"}
	next.Pairs[0].Checks = next.Pairs[0].Checks[:1]
	if err := e.Apply(next); err != nil {
		t.Fatal(err)
	}
	if opened["west"] != 2 || !west.isClosed() {
		t.Errorf("west opened %d times (closed: %v), want a new pool for its new settings "+
			"and the old one closed", opened["west"], west.isClosed())
	}
	st = e.Status()
	if len(st) != 1 || st[0].Latest == nil || st[0].Latest.Checks[StateInSync] != 1 {
		t.Fatalf("got %+v, want left_to_right alone, with its state kept across the new pool", st)
	}
	before := west.requestCount()
	e.CheckAll(context.Background())
	if west2.requestCount() != 1 || west.requestCount() != before {
		t.Errorf("requests: new pool %d, old pool %d more; want the check on the new pool",
			west2.requestCount(), west.requestCount()-before)
	}

	next = testConfig()
	next.Pairs = nil
	if err := e.Apply(next); err != nil {
		t.Fatal(err)
	}
	if !east.isClosed() || !west2.isClosed() {
		t.Errorf("databases no direction uses were left open")
	}
}

func TestEngineApplyKeepsHeartbeatDirections(t *testing.T) {
	east, west := newFakeDB(), newFakeDB()
	e := fakeEngine(t, map[string]*fakeDB{"east": east, "west": west}, newFakeClock())
	withHeartbeat := func() *config.Config {
		cfg := testConfig()
		for i := range cfg.Pairs[0].Checks {
			cfg.Pairs[0].Checks[i].Heartbeat = &config.Heartbeat{Table: "hb"}
		}
		return cfg
	}
	if err := e.Apply(withHeartbeat()); err != nil {
		t.Fatal(err)
	}
	e.CheckAll(context.Background())
	if err := e.Apply(withHeartbeat()); err != nil {
		t.Fatal(err)
	}
	for _, st := range e.Status() {
		if st.Latest == nil {
			t.Errorf("%s: an unchanged heartbeat direction lost its state at reload", st.Config.Name)
		}
	}
}

func TestEngineSubscribe(t *testing.T) {
	east, west := newFakeDB(), newFakeDB()
	east.add("1", time.Time{})
	west.add("1", time.Time{})
	e := fakeEngine(t, map[string]*fakeDB{"east": east, "west": west}, newFakeClock())
	var mu sync.Mutex
	var all, pair, other []string
	e.Subscribe(func(r *Result) { mu.Lock(); all = append(all, r.Direction); mu.Unlock() })
	e.SubscribePair("orders", func(r *Result) { mu.Lock(); pair = append(pair, r.Direction); mu.Unlock() })
	stop := e.SubscribePair("nope", func(r *Result) { mu.Lock(); other = append(other, r.Pair); mu.Unlock() })
	e.CheckAll(context.Background())
	stop()
	if len(all) != 2 || len(pair) != 2 || len(other) != 0 {
		t.Errorf("got all %v pair %v other %v, want 2, 2 and none", all, pair, other)
	}
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEngineReloadWhileChecksFail(t *testing.T) {
	east, west := newFakeDB(), newFakeDB()
	east.fail(fmt.Errorf("connection refused"))
	e := fakeEngine(t, map[string]*fakeDB{"east": east, "west": west}, newFakeClock())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			e.CheckAll(context.Background())
		}
	}()
	for range 50 {
		if err := e.Apply(testConfig()); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	for _, st := range e.Status() {
		if st.Latest == nil || st.Latest.State != StateError || st.Latest.Checks[StateError] != 50 {
			t.Errorf("%s: %+v, want 50 failed checks counted across the reloads",
				st.Config.Name, st.Latest)
		}
	}
}
