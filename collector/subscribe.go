package collector

// A Callback receives results as checks finish. Callbacks run on the
// goroutine of the check that produced the result, concurrently with other
// checks: they must be safe for concurrent use and return quickly, or they
// hold up the checks behind them. The Result must not be changed.
type Callback func(*Result)

type subscription struct {
	pair string // empty: every pair
	fn   Callback
}

// Subscribe calls fn with the result of every check of every pair from now
// on. The returned function ends the subscription.
func (e *Engine) Subscribe(fn Callback) (unsubscribe func()) {
	return e.subscribe(&subscription{fn: fn})
}

// SubscribePair calls fn with the result of every check of the named pair
// from now on. The returned function ends the subscription.
func (e *Engine) SubscribePair(pair string, fn Callback) (unsubscribe func()) {
	return e.subscribe(&subscription{pair: pair, fn: fn})
}

func (e *Engine) subscribe(s *subscription) func() {
	e.editSubs(func(subs []*subscription) []*subscription { return append(subs, s) })
	return func() {
		e.editSubs(func(subs []*subscription) []*subscription {
			out := make([]*subscription, 0, len(subs))
			for _, x := range subs {
				if x != s {
					out = append(out, x)
				}
			}
			return out
		})
	}
}

// editSubs replaces the subscription list with a changed copy.
func (e *Engine) editSubs(edit func([]*subscription) []*subscription) {
	for {
		old := e.subs.Load()
		var cur []*subscription
		if old != nil {
			cur = *old
		}
		next := edit(append([]*subscription(nil), cur...))
		if e.subs.CompareAndSwap(old, &next) {
			return
		}
	}
}

func (e *Engine) notify(r *Result) {
	subs := e.subs.Load()
	if subs == nil {
		return
	}
	for _, s := range *subs {
		if s.pair == "" || s.pair == r.Pair {
			s.fn(r)
		}
	}
}
