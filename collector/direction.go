package collector

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
)

// DefaultMaxPending is the number of pending ids a direction remembers. When
// more rows are in flight, the oldest are kept: they decide the lag.
const DefaultMaxPending = 1000

// Clock tells the time. Tests use a fake one.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// direction is the state of one direction of a pair: what it has seen and
// its latest result. Only one check of a direction runs at a time.
type direction struct {
	cfg        config.Direction
	source     *database
	target     *database
	clock      Clock
	maxPending int
	// redact takes secrets out of error texts; a reload replaces it while
	// a check may be reading it.
	redact atomic.Pointer[redactor]

	mu      sync.Mutex // held for the whole of a check
	pending map[string]time.Time
	// arrived holds the selected ids the target had at the last check, so
	// that they are not taken for new rows while the selector still returns
	// them. It never holds more than max_rows ids.
	arrived     map[string]bool
	everReached bool
	// numericIDs tells whether the selector's ids come from an integer column.
	numericIDs bool
	// versions tells whether the selector gives row versions (content checks).
	versions bool
	// diverged holds the selected ids whose target version differed from
	// the source's at the last check, with the time it was first seen.
	diverged map[string]time.Time
	// hbWritten is when the first heartbeat was written; hbSeen is the
	// time of the newest heartbeat found on the target, zero until found.
	hbWritten, hbSeen time.Time
	lastInSync        time.Time
	checks            map[State]uint64

	result atomic.Pointer[Result]
}

func newDirection(cfg config.Direction, source, target *database, clock Clock,
	redact redactor) *direction {
	d := &direction{
		cfg:        cfg,
		source:     source,
		target:     target,
		clock:      clock,
		maxPending: DefaultMaxPending,
		pending:    make(map[string]time.Time),
		arrived:    make(map[string]bool),
		diverged:   make(map[string]time.Time),
		checks:     make(map[State]uint64),
	}
	d.redact.Store(&redact)
	return d
}

// rebind points the direction at new connections to its databases, keeping
// everything it has seen. No check of it may run in the background.
func (d *direction) rebind(source, target *database) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.source, d.target = source, target
}

// overdueGrace is how late past interval + timeout a check may finish before
// the result before it no longer counts: room for scheduling, and for a
// driver to give up on a query at the timeout.
const overdueGrace = time.Second

// Latest returns the result of the latest check, or nil before the first.
//
// A check that proved the direction in sync is proof only until the next
// check is due to have finished: interval + timeout (+ [overdueGrace]) after
// it. Past that, while no check finishes — they wait for a slot, or for a
// database that hangs — Latest returns a copy that is not in sync and says
// why: an old result never stands for a current "in sync".
func (d *direction) Latest() *Result {
	r := d.result.Load()
	if r == nil || !r.InSync {
		return r
	}
	late := d.clock.Now().Sub(r.LastCheck)
	if late <= d.cfg.Interval+d.cfg.Timeout+overdueGrace {
		return r
	}
	o := *r
	o.InSync, o.Success, o.State = false, false, StateError
	o.Error = fmt.Sprintf("check overdue: none has finished for %s (interval %s, timeout %s)",
		late.Round(time.Second), d.cfg.Interval, d.cfg.Timeout)
	o.Reason = o.Error
	return &o
}

// check runs one check: the selector on the source (with a re-check of
// overdue ids), then the validator on the target for every selected and
// pending id. It publishes and returns the result.
func (d *direction) check(ctx context.Context) *Result {
	d.mu.Lock()
	defer d.mu.Unlock()

	start := d.clock.Now()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()

	r := &Result{
		Pair: d.cfg.Pair, Direction: d.cfg.Name,
		Source: d.cfg.Source, Target: d.cfg.Target,
		DataChecks: d.dataChecks(), Heartbeat: d.cfg.Heartbeat != nil,
	}
	srcReq := d.request(ctx)
	var overdue []string
	if r.DataChecks {
		overdue = d.overdue(start)
		srcReq.Select = &db.Select{Query: d.cfg.Selector, MaxRows: d.cfg.MaxRows}
		srcReq.Probe = d.probe(d.sourceValidator(), overdue)
	}
	if hb := d.cfg.Heartbeat; hb != nil {
		srcReq.Heartbeat = &db.Heartbeat{Table: hb.Table, Origin: d.origin(),
			WriteUS: d.clock.Now().UnixMicro(), Create: hb.Create}
	}
	srcResp, err := d.source.do(ctx, srcReq)
	if err != nil {
		return d.finish(r, start, fmt.Errorf("source %q: %w", d.cfg.Source, err))
	}
	if srcReq.Heartbeat != nil && d.hbWritten.IsZero() {
		d.hbWritten = start
	}
	r.RowsSelected = len(srcResp.Rows)
	d.numericIDs, d.versions = srcResp.NumericIDs, srcResp.Versions

	onSource := make(map[string]bool, len(srcResp.Rows)+len(overdue))
	for i, id := range overdue {
		onSource[id] = srcResp.Answers[i].Present
	}
	var candidates []string
	tgtReq := d.request(ctx)
	if r.DataChecks {
		candidates = d.admit(srcResp.Rows, start, onSource)
		tgtReq.Probe = d.probe(d.cfg.Validator, candidates)
	}
	if hb := d.cfg.Heartbeat; hb != nil {
		tgtReq.Heartbeat = &db.Heartbeat{Table: hb.Table, Origin: d.origin()}
	}
	tgtResp, err := d.target.do(ctx, tgtReq)
	if err != nil {
		return d.finish(r, start, fmt.Errorf("target %q: %w", d.cfg.Target, err))
	}
	if tgtResp.HeartbeatFound {
		d.hbSeen = time.UnixMicro(tgtResp.HeartbeatUS)
	}
	if r.DataChecks {
		r.RowsChecked = len(candidates)
		d.record(srcResp.Rows, candidates, tgtResp.Answers, start)
		d.settleOverdue(r, onSource)
		d.compareVersions(r, srcResp.Rows, candidates, tgtResp.Answers)
	}
	return d.finish(r, start, nil)
}

// dataChecks reports whether the direction cross-checks rows (it may have a
// heartbeat only).
func (d *direction) dataChecks() bool { return d.cfg.Selector != "" && d.cfg.Validator != "" }

// origin is the name under which this direction's heartbeat is written.
func (d *direction) origin() string { return d.cfg.Pair + ":" + d.cfg.Source }

// request starts a request with the server-side time limit of the check.
func (d *direction) request(ctx context.Context) db.Request {
	var req db.Request
	if deadline, ok := ctx.Deadline(); ok {
		req.Timeout = time.Until(deadline)
	}
	return req
}

// probe asks validator about ids; nil when there are none.
func (d *direction) probe(validator string, ids []string) *db.Probe {
	if len(ids) == 0 {
		return nil
	}
	return &db.Probe{Query: validator, IDs: ids, NumericIDs: d.numericIDs, Versions: d.versions}
}

// compareVersions compares the source's version of every selected row with
// the target's. A row whose versions differ is divergent once they have
// differed for longer than max_lag; a row that is equal again, or no longer
// selected, is forgotten.
func (d *direction) compareVersions(r *Result, rows []db.Row, ids []string, answers []db.Answer) {
	if !d.versions {
		clear(d.diverged)
		return
	}
	now := d.clock.Now()
	target := make(map[string]db.Answer, len(ids))
	for i, id := range ids {
		target[id] = answers[i]
	}
	differs := make(map[string]bool, len(rows))
	for _, row := range rows {
		if a, ok := target[row.ID]; ok && a.Present && a.Version != row.Version {
			differs[row.ID] = true
			if _, seen := d.diverged[row.ID]; !seen {
				d.diverged[row.ID] = now
			}
		}
	}
	var divergent []string
	for id, since := range d.diverged {
		switch {
		case !differs[id]:
			delete(d.diverged, id)
		case now.Sub(since) > d.cfg.MaxLag:
			divergent = append(divergent, id)
		}
	}
	slices.SortFunc(divergent, func(a, b string) int {
		return cmp.Or(d.diverged[a].Compare(d.diverged[b]), cmp.Compare(a, b))
	})
	r.RowsDivergent = len(divergent)
	r.DivergentIDs = slices.Clone(divergent[:min(len(divergent), maxListedIDs)])
}

// sourceValidator is the query that asks the source whether an id is there.
func (d *direction) sourceValidator() string {
	return cmp.Or(d.cfg.SourceValidator, d.cfg.Validator)
}

// overdue lists the pending ids older than max_lag at now, oldest first.
func (d *direction) overdue(now time.Time) []string {
	var ids []string
	for id, since := range d.pending {
		if now.Sub(since) > d.cfg.MaxLag {
			ids = append(ids, id)
		}
	}
	d.sortBySince(ids)
	return ids
}

// admit adds newly selected ids to the pending set and returns every id to
// ask the target about: the selected ones, then the pending ones. Selected
// ids are on the source by definition; they are marked so in onSource.
func (d *direction) admit(rows []db.Row, now time.Time, onSource map[string]bool) []string {
	ids := make([]string, 0, len(rows)+len(d.pending))
	seen := make(map[string]bool, len(rows))
	for _, row := range rows {
		if seen[row.ID] {
			continue
		}
		seen[row.ID] = true
		onSource[row.ID] = true
		ids = append(ids, row.ID)
		if _, ok := d.pending[row.ID]; ok || d.arrived[row.ID] {
			continue
		}
		since := now
		if !row.TS.IsZero() && row.TS.Before(now) {
			since = row.TS
		}
		d.pending[row.ID] = since
	}
	d.trimPending()
	for id := range d.pending {
		if !seen[id] {
			ids = append(ids, id)
		}
	}
	if n := len(rows); n < len(ids) {
		d.sortBySince(ids[n:])
	}
	return ids
}

// record takes in the target's answers: found ids leave the pending set and
// become the arrived set; an id that had arrived and is gone from the target
// again is pending from now on.
func (d *direction) record(rows []db.Row, ids []string, answers []db.Answer, now time.Time) {
	found := make(map[string]bool, len(ids))
	for i, id := range ids {
		if answers[i].Present {
			found[id] = true
			delete(d.pending, id)
			d.everReached = true
		}
	}
	arrived := make(map[string]bool, len(rows))
	for _, row := range rows {
		switch {
		case found[row.ID]:
			arrived[row.ID] = true
		case d.arrived[row.ID]:
			if _, ok := d.pending[row.ID]; !ok {
				d.pending[row.ID] = now
			}
		}
	}
	d.arrived = arrived
	d.trimPending()
}

// trimPending keeps the pending set within its cap, dropping the newest ids.
func (d *direction) trimPending() {
	extra := len(d.pending) - d.maxPending
	if extra <= 0 {
		return
	}
	ids := make([]string, 0, len(d.pending))
	for id := range d.pending {
		ids = append(ids, id)
	}
	d.sortBySince(ids)
	for _, id := range ids[len(ids)-extra:] {
		delete(d.pending, id)
	}
}

// settleOverdue decides about the ids still pending after the target was
// asked: an overdue id that the source no longer has was deleted there and
// is dropped; an overdue id that the source still has is missing. An id
// that became overdue during this check has not been asked about on the
// source yet: it is neither, and its age keeps the direction out of sync
// until the next check asks.
func (d *direction) settleOverdue(r *Result, onSource map[string]bool) {
	now := d.clock.Now()
	var missing []string
	for id, since := range d.pending {
		if now.Sub(since) <= d.cfg.MaxLag {
			continue
		}
		present, asked := onSource[id]
		switch {
		case !asked:
		case !present:
			delete(d.pending, id)
		default:
			missing = append(missing, id)
		}
	}
	d.sortBySince(missing)
	r.RowsMissing = len(missing)
	r.MissingIDs = slices.Clone(missing[:min(len(missing), maxListedIDs)])
}

// finish computes lag and state, updates the counters, and publishes.
func (d *direction) finish(r *Result, start time.Time, err error) *Result {
	now := d.clock.Now()
	r.LastCheck = now
	r.Duration = now.Sub(start)
	r.Pending = len(d.pending)
	for _, since := range d.pending {
		r.Lag = max(r.Lag, now.Sub(since))
	}
	if r.Heartbeat {
		r.HeartbeatFound = !d.hbSeen.IsZero()
		switch {
		case r.HeartbeatFound:
			r.HeartbeatAge = max(now.Sub(d.hbSeen), 0)
		case !d.hbWritten.IsZero():
			r.HeartbeatAge = now.Sub(d.hbWritten)
		}
		r.Lag = max(r.Lag, r.HeartbeatAge)
	}

	switch {
	case err != nil:
		r.State = StateError
		r.Error = (*d.redact.Load())(err.Error())
		r.Reason = r.Error
	case r.Heartbeat && !r.HeartbeatFound:
		r.State = StateOutOfSync
		r.Reason = fmt.Sprintf("heartbeat of %s not found on the target yet", d.origin())
	case r.Heartbeat && r.HeartbeatAge > d.cfg.MaxLag:
		r.State = StateOutOfSync
		r.Reason = fmt.Sprintf("heartbeat on the target is %s old, more than max_lag (%s)",
			r.HeartbeatAge.Round(time.Millisecond), d.cfg.MaxLag)
	case !r.DataChecks:
		r.State = StateInSync
		r.InSync = true
		d.lastInSync = now
	case r.RowsSelected == 0:
		r.State = StateOutOfSync
		r.Reason = "selector returned no rows: nothing to prove"
	case r.RowsMissing > 0:
		r.State = StateOutOfSync
		r.Reason = fmt.Sprintf("%d rows not on the target after max_lag (%s)",
			r.RowsMissing, d.cfg.MaxLag)
	case r.Lag > d.cfg.MaxLag:
		r.State = StateOutOfSync
		r.Reason = fmt.Sprintf("oldest pending row is older than max_lag (%s)", d.cfg.MaxLag)
	case !d.everReached:
		r.State = StateOutOfSync
		r.Reason = "no row has reached the target yet"
	case r.RowsDivergent > 0:
		r.State = StateOutOfSync
		r.Reason = fmt.Sprintf("%d rows differ on the target after max_lag (%s)",
			r.RowsDivergent, d.cfg.MaxLag)
	default:
		r.State = StateInSync
		r.InSync = true
		d.lastInSync = now
	}
	r.Success = err == nil
	r.LastInSync = d.lastInSync
	d.checks[r.State]++
	r.Checks = maps.Clone(d.checks)
	d.result.Store(r)
	return r
}

// sortBySince orders pending ids oldest first; ties by id, for stable output.
func (d *direction) sortBySince(ids []string) {
	slices.SortFunc(ids, func(a, b string) int {
		if c := d.pending[a].Compare(d.pending[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
}
