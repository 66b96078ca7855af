package collector

import (
	"context"
	"sync"
	"time"
)

// Settle checks every direction until its answer is final, and returns the
// final results ordered by pair and direction. The rows in flight at a
// direction's first check (pending on the target, or with a version that
// differs there) are followed until each has arrived, has been missing or
// divergent for longer than max_lag, or is gone from the source; rows
// written after that first check are not waited for, so a busy source
// settles too. A heartbeat is followed until the one written by this engine
// is seen on the target, or max_lag has passed since it was written. A
// check that fails is final.
//
// While something is in flight, the direction is checked again every poll
// (at most its interval), so a row on its way gets the time max_lag allows
// it, and no longer. Every check is passed to the subscribers, as in the
// background. Settle does not need Start; it returns early, with the latest
// results, when ctx ends.
func (e *Engine) Settle(ctx context.Context, poll time.Duration) []*Result {
	dirs := e.view.Load().dirs
	results := make([]*Result, len(dirs))
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Go(func() {
			wait := min(poll, d.cfg.Interval)
			var followed map[string]bool
			for {
				r := e.runCheck(ctx, d)
				results[i] = r
				if r == nil {
					return
				}
				if followed == nil {
					followed = d.inFlight()
				}
				if d.final(r, followed) || !sleep(ctx, wait) {
					return
				}
			}
		})
	}
	wg.Wait()
	return results
}

// inFlight returns the ids whose answer is not known yet: pending on the
// target, or with a version that differs there.
func (d *direction) inFlight() map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make(map[string]bool, len(d.pending)+len(d.diverged))
	for id := range d.pending {
		ids[id] = true
	}
	for id := range d.diverged {
		ids[id] = true
	}
	return ids
}

// final reports whether r, the latest result, can no longer change by
// waiting for the followed ids and the heartbeat. Followed ids whose
// answer is known are removed from followed.
func (d *direction) final(r *Result, followed map[string]bool) bool {
	if r.State == StateError || r.RowsMissing > 0 || r.RowsDivergent > 0 {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range followed {
		_, pending := d.pending[id]
		_, diverged := d.diverged[id]
		if !pending && !diverged {
			delete(followed, id)
		}
	}
	if len(followed) > 0 {
		return false
	}
	if d.cfg.Heartbeat != nil && !d.hbWritten.IsZero() && d.hbSeen.Before(d.hbWritten) {
		return d.clock.Now().Sub(d.hbWritten) > d.cfg.MaxLag
	}
	return true
}
