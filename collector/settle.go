package collector

import (
	"context"
	"sync"
	"time"
)

// Settle checks every direction until its answer is final, and returns the
// final results ordered by pair and direction. A check is final when it
// failed, or when no row is in flight any more: either every selected row
// has reached the target, or a row has been missing for longer than max_lag.
// While rows are in flight, the direction is checked again every poll (at
// most its interval), so a row that is on its way gets the time max_lag
// allows it, and no longer. Every check is passed to the subscribers, as in
// the background. Settle does not need Start; it returns early, with the
// latest results, when ctx ends.
func (e *Engine) Settle(ctx context.Context, poll time.Duration) []*Result {
	dirs := e.view.Load().dirs
	results := make([]*Result, len(dirs))
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Go(func() {
			wait := min(poll, d.cfg.Interval)
			for {
				r := e.runCheck(ctx, d)
				results[i] = r
				if r == nil || final(r) || !sleep(ctx, wait) {
					return
				}
			}
		})
	}
	wg.Wait()
	return results
}

// final reports whether a result can no longer change by waiting.
func final(r *Result) bool {
	return r.State == StateError || r.Pending == 0 || r.RowsMissing > 0
}
