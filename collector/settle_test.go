package collector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
)

// settle runs Settle with a short poll and fails t when Settle did not
// return by itself before its context ended.
func settle(t *testing.T, e *Engine) []*Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	results := e.Settle(ctx, time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("Settle did not reach a final answer: %+v", results)
	}
	return results
}

func TestSettleBusySource(t *testing.T) {
	east, west := newFakeDB(), newFakeDB()
	east.add("0", time.Time{})
	west.add("0", time.Time{})
	n := 0
	east.hook = func(req db.Request) {
		if req.Select == nil {
			return
		}
		// Every row written so far reaches west; one more is on its way.
		for i := len(east.rows) - 1; i >= 0; i-- {
			if id := east.rows[i].ID; !west.has(id) {
				west.add(id, time.Time{})
			}
		}
		n++
		id := fmt.Sprint(n)
		east.rows = append([]db.Row{{ID: id}}, east.rows...)
		east.ids[id] = true
	}
	e := fakeEngine(t, map[string]*fakeDB{"east": east, "west": west}, newFakeClock())
	results := settle(t, e)
	for _, r := range results {
		if !r.InSync {
			t.Errorf("%s: %s, want in sync: every row arrives at the next check", r.Direction, r.Reason)
		}
	}
	if results[0].Pending == 0 {
		t.Errorf("left_to_right settled with nothing pending: the source was not busy")
	}
}

func TestSettleRowThatNeverArrives(t *testing.T) {
	clock := newFakeClock()
	east, west := newFakeDB(), newFakeDB()
	east.add("1", time.Time{})
	west.add("1", time.Time{})
	east.add("2", time.Time{}) // never reaches west
	east.hook = func(req db.Request) {
		if req.Select != nil {
			clock.Advance(20 * time.Second) // max_lag is a minute
		}
	}
	e := fakeEngine(t, map[string]*fakeDB{"east": east, "west": west}, clock)
	r := settle(t, e)[0]
	if r.InSync || r.RowsMissing != 1 || r.MissingIDs[0] != "2" {
		t.Errorf("got %+v, want row 2 missing once max_lag passed", r)
	}
}

// heartbeatConfig is testConfig with a heartbeat on every direction.
func heartbeatConfig() *config.Config {
	cfg := testConfig()
	for i := range cfg.Pairs[0].Checks {
		cfg.Pairs[0].Checks[i].Heartbeat = &config.Heartbeat{Table: "hb"}
	}
	return cfg
}

func TestSettleWaitsForItsOwnHeartbeat(t *testing.T) {
	clock := newFakeClock()
	east, west := newFakeDB(), newFakeDB()
	for _, f := range []*fakeDB{east, west} {
		f.add("1", time.Time{})
	}
	// A heartbeat an hour old, left by an earlier run; replication carries
	// each write to the other side one check later.
	old := clock.Now().Add(-time.Hour).UnixMicro()
	west.heartbeats["orders:east"], east.heartbeats["orders:west"] = old, old
	carry := func(from, to *fakeDB, origin string) func(db.Request) {
		var last int64
		return func(req db.Request) {
			if req.Heartbeat == nil || req.Heartbeat.WriteUS != 0 {
				return
			}
			if last != 0 {
				to.heartbeats[origin] = last
			}
			last, _ = from.heartbeat(origin)
		}
	}
	west.hook = carry(east, west, "orders:east")
	east.hook = carry(west, east, "orders:west")
	e := fakeEngine(t, map[string]*fakeDB{"east": east, "west": west}, clock)
	if err := e.Apply(heartbeatConfig()); err != nil {
		t.Fatal(err)
	}
	for _, r := range settle(t, e) {
		if !r.InSync || !r.HeartbeatFound || r.HeartbeatAge != 0 {
			t.Errorf("%s: in sync %v, age %v (%s): want this run's heartbeat found, not the old one",
				r.Direction, r.InSync, r.HeartbeatAge, r.Reason)
		}
	}
}

func TestSettleHeartbeatThatNeverArrives(t *testing.T) {
	clock := newFakeClock()
	east, west := newFakeDB(), newFakeDB()
	for _, f := range []*fakeDB{east, west} {
		f.add("1", time.Time{})
		f.hook = func(req db.Request) {
			if req.Heartbeat != nil && req.Heartbeat.WriteUS != 0 {
				clock.Advance(25 * time.Second)
			}
		}
	}
	e := fakeEngine(t, map[string]*fakeDB{"east": east, "west": west}, clock)
	if err := e.Apply(heartbeatConfig()); err != nil {
		t.Fatal(err)
	}
	for _, r := range settle(t, e) {
		if r.InSync || r.HeartbeatFound || r.HeartbeatAge <= time.Minute {
			t.Errorf("%s: %+v, want out of sync once max_lag passed without the heartbeat",
				r.Direction, r)
		}
	}
}
