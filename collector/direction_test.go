package collector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
)

const testMaxLag = time.Minute

// harness is one direction between two fake databases on a fake clock.
type harness struct {
	clock  *fakeClock
	src    *fakeDB
	tgt    *fakeDB
	dir    *direction
	srcDB  *database
	tgtDB  *database
	nextID int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{clock: newFakeClock(), src: newFakeDB(), tgt: newFakeDB()}
	h.srcDB = &database{name: "east", conn: h.src}
	h.tgtDB = &database{name: "west", conn: h.tgt}
	h.dir = newDirection(config.Direction{
		Pair: "orders", Name: config.LeftToRight, Source: "east", Target: "west",
		Selector: "select id", Validator: "select count(*) where id = $1",
		Interval: 10 * time.Second, Timeout: 5 * time.Second, MaxLag: testMaxLag, MaxRows: 5,
	}, h.srcDB, h.tgtDB, h.clock, func(s string) string { return s })
	return h
}

// write adds a row on the source, and on the target too when replicated.
func (h *harness) write(replicated bool) string {
	h.nextID++
	id := fmt.Sprint(h.nextID)
	h.src.add(id, time.Time{})
	if replicated {
		h.tgt.add(id, time.Time{})
	}
	return id
}

func (h *harness) check(t *testing.T) *Result {
	t.Helper()
	return h.dir.check(context.Background())
}

func TestCheckInSync(t *testing.T) {
	h := newHarness(t)
	h.write(true)
	h.write(true)
	r := h.check(t)
	if !r.InSync || r.State != StateInSync || !r.Success {
		t.Fatalf("got %+v, want in sync", r)
	}
	if r.RowsSelected != 2 || r.RowsChecked != 2 || r.Pending != 0 || r.Lag != 0 {
		t.Errorf("got selected %d checked %d pending %d lag %v, want 2 2 0 0",
			r.RowsSelected, r.RowsChecked, r.Pending, r.Lag)
	}
	if !r.LastInSync.Equal(h.clock.Now()) {
		t.Errorf("LastInSync = %v, want %v", r.LastInSync, h.clock.Now())
	}
}

func TestCheckEmptySelectionIsNotInSync(t *testing.T) {
	h := newHarness(t)
	r := h.check(t)
	if r.InSync || r.State != StateOutOfSync || !strings.Contains(r.Reason, "no rows") {
		t.Fatalf("got %+v, want out of sync for an empty selection", r)
	}
}

func TestCheckNeverReachedIsNotInSync(t *testing.T) {
	h := newHarness(t)
	h.write(false)
	r := h.check(t)
	if r.InSync || !strings.Contains(r.Reason, "no row has reached") {
		t.Fatalf("got %+v, want out of sync until a row reaches the target", r)
	}
	if r.Pending != 1 || r.RowsMissing != 0 {
		t.Errorf("pending %d missing %d, want 1 0", r.Pending, r.RowsMissing)
	}
}

func TestCheckPendingWithinMaxLagStaysInSync(t *testing.T) {
	h := newHarness(t)
	h.write(true)
	h.check(t)
	id := h.write(false)
	h.clock.Advance(30 * time.Second)
	r := h.check(t)
	if !r.InSync || r.Pending != 1 || r.RowsMissing != 0 {
		t.Fatalf("got %+v, want in sync with one row in flight", r)
	}
	h.clock.Advance(20 * time.Second)
	r = h.check(t)
	if r.Lag != 20*time.Second {
		t.Errorf("lag = %v, want 20s (since the row was first seen)", r.Lag)
	}
	h.tgt.add(id, time.Time{})
	r = h.check(t)
	if !r.InSync || r.Pending != 0 || r.Lag != 0 {
		t.Errorf("got %+v, want in sync with nothing pending once the row arrived", r)
	}
}

func TestCheckOverdueRowIsMissing(t *testing.T) {
	h := newHarness(t)
	h.write(true)
	h.check(t)
	id := h.write(false)
	h.check(t) // first seen now
	h.clock.Advance(testMaxLag + time.Second)
	r := h.check(t)
	if r.InSync || r.State != StateOutOfSync || r.RowsMissing != 1 {
		t.Fatalf("got %+v, want one missing row", r)
	}
	if diff := cmp.Diff([]string{id}, r.MissingIDs); diff != "" {
		t.Errorf("MissingIDs (-want +got):\n%s", diff)
	}
	if r.Lag != testMaxLag+time.Second {
		t.Errorf("lag = %v, want %v", r.Lag, testMaxLag+time.Second)
	}
	h.clock.Advance(10 * time.Second)
	if r := h.check(t); r.Lag != testMaxLag+11*time.Second {
		t.Errorf("lag = %v, want it to keep growing", r.Lag)
	}
}

func TestCheckTimestampSetsSince(t *testing.T) {
	h := newHarness(t)
	h.write(true)
	h.check(t)
	h.src.add("old", h.clock.Now().Add(-2*testMaxLag))
	r := h.check(t)
	if r.InSync || r.RowsMissing != 1 || r.Lag != 2*testMaxLag {
		t.Fatalf("got %+v, want a row that is already overdue by its own ts", r)
	}
	h.src.add("future", h.clock.Now().Add(time.Hour))
	h.tgt.add("old", time.Time{})
	r = h.check(t)
	if r.Lag != 0 || r.Pending != 1 || !r.InSync {
		t.Errorf("got lag %v pending %d in_sync %v: a ts in the future counts from now",
			r.Lag, r.Pending, r.InSync)
	}
}

func TestCheckOverdueRowGoneFromSourceIsDropped(t *testing.T) {
	h := newHarness(t)
	h.write(true)
	h.check(t)
	id := h.write(false)
	h.check(t)
	for range 6 { // push the row out of the selection (max_rows 5)
		h.write(true)
	}
	h.src.remove(id)
	h.clock.Advance(testMaxLag + time.Second)
	r := h.check(t)
	probe := h.src.lastRequest().Probe
	if probe == nil || !cmp.Equal(probe.IDs, []string{id}) {
		t.Fatalf("source was asked about %+v, want the overdue id %q", probe, id)
	}
	if !r.InSync || r.RowsMissing != 0 || r.Pending != 0 {
		t.Fatalf("got %+v, want the deleted row dropped and the direction in sync", r)
	}
}

func TestCheckRowOverdueDuringCheckIsAskedOnSourceFirst(t *testing.T) {
	h := newHarness(t)
	h.write(true)
	h.check(t)
	id := h.write(false)
	h.check(t)
	for range 6 { // push the row out of the selection (max_rows 5)
		h.write(true)
	}
	h.src.remove(id) // deleted on the source: it will never arrive
	h.clock.Advance(testMaxLag - time.Second)
	h.tgt.hook = func(db.Request) { h.clock.Advance(2 * time.Second) }
	r := h.check(t)
	h.tgt.hook = nil
	if r.InSync || r.RowsMissing != 0 || r.Pending != 1 {
		t.Fatalf("got %+v, want out of sync by age, not missing: the source was not asked yet", r)
	}
	if !strings.Contains(r.Reason, "older than max_lag") {
		t.Errorf("reason %q, want the age of the oldest pending row", r.Reason)
	}
	r = h.check(t)
	if probe := h.src.lastRequest().Probe; probe == nil || !cmp.Equal(probe.IDs, []string{id}) {
		t.Fatalf("source was asked about %+v, want the overdue id %q", probe, id)
	}
	if !r.InSync || r.Pending != 0 {
		t.Errorf("got %+v, want the deleted row dropped once the source was asked", r)
	}
}

func TestCheckAsksTargetAboutSelectedAndPending(t *testing.T) {
	h := newHarness(t)
	h.write(true)
	old := h.write(false)
	h.check(t)
	for range 5 {
		h.write(true)
	}
	h.check(t)
	got := h.tgt.lastRequest().Probe.IDs
	want := []string{"7", "6", "5", "4", "3", old}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("target asked about (-want +got):\n%s", diff)
	}
}

func TestCheckPendingIsCappedKeepingOldest(t *testing.T) {
	h := newHarness(t)
	h.dir.maxPending = 3
	h.write(true)
	h.check(t)
	var ids []string
	for range 5 {
		ids = append(ids, h.write(false))
		h.clock.Advance(time.Second)
		h.check(t)
	}
	r := h.dir.Latest()
	if r.Pending != 3 {
		t.Fatalf("pending = %d, want the cap 3", r.Pending)
	}
	for _, id := range ids[:3] {
		if _, ok := h.dir.pending[id]; !ok {
			t.Errorf("oldest id %q was dropped from the pending set", id)
		}
	}
	if r.Lag != 4*time.Second {
		t.Errorf("lag = %v, want 4s from the oldest id", r.Lag)
	}
}

func TestCheckErrorKeepsPendingAndLagGrows(t *testing.T) {
	h := newHarness(t)
	h.write(true)
	h.check(t)
	h.write(false)
	h.check(t)
	h.tgt.fail(&db.Error{Stage: db.StageConnect, Unreachable: true, Err: errors.New("refused")})
	h.clock.Advance(90 * time.Second)
	r := h.check(t)
	if r.InSync || r.Success || r.State != StateError {
		t.Fatalf("got %+v, want an error", r)
	}
	if want := `target "west": connect: refused`; r.Error != want {
		t.Errorf("error = %q, want %q", r.Error, want)
	}
	if r.Lag != 90*time.Second || r.Pending != 1 {
		t.Errorf("lag %v pending %d, want 1m30s and 1: pending outlives failures", r.Lag, r.Pending)
	}
	if h.tgtDB.up.Load() != upNo || h.srcDB.up.Load() != upYes {
		t.Errorf("database up: target %d source %d, want down and up",
			h.tgtDB.up.Load(), h.srcDB.up.Load())
	}
	if got := r.Checks; got[StateError] != 1 || got[StateInSync] != 2 {
		t.Errorf("checks = %v, want 2 in sync and 1 error", got)
	}
}

func TestCheckSourceErrorAddsNothing(t *testing.T) {
	h := newHarness(t)
	h.src.fail(&db.Error{Stage: db.StageSelect, Err: errors.New(`relation "x" does not exist`)})
	r := h.check(t)
	want := `source "east": selector: relation "x" does not exist`
	if r.State != StateError || r.Error != want {
		t.Fatalf("got state %q error %q, want error %q", r.State, r.Error, want)
	}
	if h.srcDB.up.Load() != upYes {
		t.Errorf("an SQL error means the database answered: want it up")
	}
}

func TestCheckRedactsErrors(t *testing.T) {
	h := newHarness(t)
	redact := redactor(strings.NewReplacer("hunter2", "<secret>").Replace)
	h.dir.redact.Store(&redact)
	h.src.fail(errors.New("password hunter2 rejected"))
	if r := h.check(t); strings.Contains(r.Error, "hunter2") {
		t.Fatalf("error %q holds the password", r.Error)
	}
}

func TestLatestInSyncExpiresWhenNextCheckIsOverdue(t *testing.T) {
	h := newHarness(t)
	h.write(true)
	checked := h.check(t)
	if !checked.InSync {
		t.Fatalf("got %+v, want in sync", checked)
	}

	// Interval 10s + timeout 5s + grace: the next check may still be on its way.
	h.clock.Advance(15*time.Second + overdueGrace)
	if r := h.dir.Latest(); r != checked {
		t.Fatalf("Latest within interval + timeout + grace = %+v, want the check's own result", r)
	}

	h.clock.Advance(time.Millisecond)
	r := h.dir.Latest()
	if r.InSync || r.Success || r.State != StateError || !strings.Contains(r.Reason, "check overdue") ||
		r.Error != r.Reason {
		t.Fatalf("Latest with the next check overdue = %+v, want an overdue error", r)
	}
	if !checked.InSync || checked.State != StateInSync {
		t.Errorf("the published result changed: %+v", checked)
	}
	if r.LastCheck != checked.LastCheck || r.LastInSync != checked.LastInSync {
		t.Errorf("overdue result moved its times: %v %v, want %v %v",
			r.LastCheck, r.LastInSync, checked.LastCheck, checked.LastInSync)
	}

	// The next check that finishes is the result again.
	if r := h.check(t); !r.InSync || h.dir.Latest() != r {
		t.Errorf("after the next check: %+v, want it in sync and latest", h.dir.Latest())
	}
}

func TestLatestNotInSyncIsNeverRewritten(t *testing.T) {
	h := newHarness(t)
	checked := h.check(t) // empty selection: out of sync
	h.clock.Advance(time.Hour)
	if r := h.dir.Latest(); r != checked {
		t.Errorf("Latest of an old out-of-sync result = %+v, want it as published", r)
	}
}
