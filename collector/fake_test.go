package collector

import (
	"context"
	"sync"
	"time"

	"github.com/spengler-dev/spengler/db"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeDB stands in for a database in the engine's bookkeeping tests: it
// holds a set of ids, answers selectors with its newest rows and validators
// with membership. It models no database behaviour beyond that.
type fakeDB struct {
	mu       sync.Mutex
	rows     []db.Row // newest first
	ids      map[string]bool
	err      error
	requests []db.Request
	closed   bool
	// hook, when set, runs at the start of every request.
	hook func(db.Request)
	// heartbeats holds the heartbeat table: ts_us by origin.
	heartbeats map[string]int64
}

func newFakeDB() *fakeDB { return &fakeDB{ids: map[string]bool{}, heartbeats: map[string]int64{}} }

// has reports whether id is in f.
func (f *fakeDB) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ids[id]
}

// heartbeat returns the heartbeat row of origin.
func (f *fakeDB) heartbeat(origin string) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	us, ok := f.heartbeats[origin]
	return us, ok
}

// setHeartbeat writes the heartbeat row of origin, as replication would.
func (f *fakeDB) setHeartbeat(origin string, us int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats[origin] = us
}

func (f *fakeDB) add(id string, ts time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rows = append([]db.Row{{ID: id, TS: ts}}, f.rows...)
	f.ids[id] = true
}

func (f *fakeDB) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ids, id)
	var rows []db.Row
	for _, r := range f.rows {
		if r.ID != id {
			rows = append(rows, r)
		}
	}
	f.rows = rows
}

func (f *fakeDB) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeDB) lastRequest() db.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func (f *fakeDB) Do(_ context.Context, req db.Request) (db.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	if f.hook != nil {
		f.hook(req)
	}
	if f.err != nil {
		return db.Response{}, f.err
	}
	var resp db.Response
	if req.Select != nil {
		resp.Rows = append(resp.Rows, f.rows[:min(len(f.rows), req.Select.MaxRows)]...)
	}
	if req.Probe != nil {
		for _, id := range req.Probe.IDs {
			resp.Answers = append(resp.Answers, db.Answer{Present: f.ids[id]})
		}
	}
	if hb := req.Heartbeat; hb != nil {
		if hb.WriteUS != 0 {
			f.heartbeats[hb.Origin] = hb.WriteUS
		} else {
			resp.HeartbeatUS, resp.HeartbeatFound = f.heartbeats[hb.Origin]
		}
	}
	return resp, nil
}

func (f *fakeDB) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
}

func (f *fakeDB) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (f *fakeDB) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}
