package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spengler-dev/spengler/config"
)

// Options configure an Engine.
type Options struct {
	// Logger receives lifecycle messages and state changes; nil discards them.
	Logger *slog.Logger
	// Concurrency bounds how many checks run at once; 0 means 64.
	Concurrency int
	// ConnectTimeout bounds establishing one database connection; 0 means 5s.
	ConnectTimeout time.Duration
	// Clock tells the time; nil means the real clock.
	Clock Clock
	// Open opens databases; nil means Open.
	Open Opener
}

// Engine runs the checks of a configuration in the background and keeps the
// latest result of every direction. All its methods are safe for concurrent
// use.
type Engine struct {
	opts   Options
	log    *slog.Logger
	sem    chan struct{}
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu      sync.Mutex // serialises Apply, Start and Close
	started bool
	closed  bool
	dbs     map[string]*database
	runners map[dirKey]*runner
	wg      sync.WaitGroup

	view atomic.Pointer[view]
	subs atomic.Pointer[[]*subscription]
}

type dirKey struct{ pair, direction string }

// runner is a direction and the loop that checks it.
type runner struct {
	dir    *direction
	cancel context.CancelFunc
	done   chan struct{}
}

// view is what readers see: the directions and databases of the running
// configuration, in a stable order. It is replaced, never changed.
type view struct {
	dirs []*direction
	dbs  []*database
}

// New returns an engine with no configuration.
func New(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Open == nil {
		opts.Open = Open
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		opts:    opts,
		log:     opts.Logger,
		sem:     make(chan struct{}, opts.Concurrency),
		ctx:     ctx,
		cancel:  cancel,
		dbs:     make(map[string]*database),
		runners: make(map[dirKey]*runner),
	}
	e.view.Store(&view{})
	return e
}

// ErrClosed is returned by the methods of an Engine that was closed.
var ErrClosed = errors.New("engine closed")

// Apply makes cfg the running configuration. Directions whose settings did
// not change keep their state (pending ids, last in sync, counters); those
// whose databases changed get the new connections and keep their state too.
// Removed directions stop; new ones start (when the engine is started).
// Databases whose settings changed get new connections, and databases that
// no direction uses any more are closed. A database that no pair names is
// not opened.
func (e *Engine) Apply(cfg *config.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}

	dbs, err := e.openDatabases(cfg)
	if err != nil {
		return err
	}
	redact := newRedactor(cfg)

	runners := make(map[dirKey]*runner)
	var added, rebound []*runner
	for _, p := range cfg.Pairs {
		for _, dc := range p.Checks {
			key := dirKey{dc.Pair, dc.Name}
			src, tgt := dbs[dc.Source], dbs[dc.Target]
			old, ok := e.runners[key]
			if !ok || !old.dir.cfg.Equal(dc) {
				r := &runner{dir: newDirection(dc, src, tgt, e.opts.Clock, redact)}
				runners[key] = r
				added = append(added, r)
				continue
			}
			old.dir.redact.Store(&redact)
			runners[key] = old
			if old.dir.source != src || old.dir.target != tgt {
				rebound = append(rebound, old)
			}
		}
	}

	var stopping []*runner
	for key, old := range e.runners {
		if runners[key] != old {
			stopping = append(stopping, old)
		}
	}
	stopRunners(append(stopping, rebound...))
	for _, r := range rebound {
		r.dir.rebind(dbs[r.dir.cfg.Source], dbs[r.dir.cfg.Target])
	}
	for name, old := range e.dbs {
		if dbs[name] != old {
			old.conn.Close()
		}
	}
	e.dbs, e.runners = dbs, runners
	e.publishView()
	if e.started {
		for _, r := range append(added, rebound...) {
			e.startRunner(r, true)
		}
	}
	e.log.Info("Configuration applied", "pairs", len(cfg.Pairs),
		"directions", len(runners), "databases", len(dbs))
	return nil
}

// openDatabases returns the databases that cfg's directions use: the
// running ones whose settings did not change, and new connections for the
// others. On error, the new connections are closed again.
func (e *Engine) openDatabases(cfg *config.Config) (map[string]*database, error) {
	used := make(map[string]bool, len(cfg.Databases))
	for _, p := range cfg.Pairs {
		for _, dc := range p.Checks {
			used[dc.Source], used[dc.Target] = true, true
		}
	}
	dbs := make(map[string]*database, len(used))
	for name, dc := range cfg.Databases {
		if !used[name] {
			continue
		}
		if old, ok := e.dbs[name]; ok && old.cfg == *dc {
			dbs[name] = old
			continue
		}
		conn, err := e.opts.Open(dc, e.opts.ConnectTimeout)
		if err != nil {
			for n, d := range dbs {
				if e.dbs[n] != d {
					d.conn.Close()
				}
			}
			return nil, fmt.Errorf("open database %q: %w", name, err)
		}
		dbs[name] = &database{name: name, cfg: *dc, conn: conn}
	}
	return dbs, nil
}

func (e *Engine) publishView() {
	v := &view{}
	for _, r := range e.runners {
		v.dirs = append(v.dirs, r.dir)
	}
	slices.SortFunc(v.dirs, func(a, b *direction) int {
		return cmp.Or(cmp.Compare(a.cfg.Pair, b.cfg.Pair), cmp.Compare(a.cfg.Name, b.cfg.Name))
	})
	for _, d := range e.dbs {
		v.dbs = append(v.dbs, d)
	}
	slices.SortFunc(v.dbs, func(a, b *database) int { return cmp.Compare(a.name, b.name) })
	e.view.Store(v)
}

// Start begins checking every direction on its interval. The first checks
// are spread over the interval.
func (e *Engine) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.started {
		return nil
	}
	e.started = true
	for _, r := range e.runners {
		e.startRunner(r, true)
	}
	return nil
}

// Close stops every check, waits for checks in flight to end (they are
// cancelled), and closes every database. It returns when nothing runs.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	e.cancel()
	e.mu.Unlock()

	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.dbs {
		d.conn.Close()
	}
}

// CheckAll runs one check of every direction, concurrently within the
// engine's concurrency limit, and returns the results ordered by pair and
// direction. It does not need Start.
func (e *Engine) CheckAll(ctx context.Context) []*Result {
	dirs := e.view.Load().dirs
	results := make([]*Result, len(dirs))
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Go(func() { results[i] = e.runCheck(ctx, d) })
	}
	wg.Wait()
	return results
}

// Results returns the latest result of every direction that has been
// checked, ordered by pair and direction.
func (e *Engine) Results() []*Result {
	dirs := e.view.Load().dirs
	out := make([]*Result, 0, len(dirs))
	for _, d := range dirs {
		if r := d.Latest(); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// DatabaseStatus is whether a database answered when it was last used.
type DatabaseStatus struct {
	Name string
	// Known is false until the database has been used.
	Known bool
	Up    bool
}

// Databases returns the status of every configured database, by name.
func (e *Engine) Databases() []DatabaseStatus {
	dbs := e.view.Load().dbs
	out := make([]DatabaseStatus, len(dbs))
	for i, d := range dbs {
		s := d.up.Load()
		out[i] = DatabaseStatus{Name: d.name, Known: s != upUnknown, Up: s == upYes}
	}
	return out
}

func (e *Engine) startRunner(r *runner, spread bool) {
	ctx, cancel := context.WithCancel(e.ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(r.done)
		e.loop(ctx, r.dir, spread)
	}()
}

// stopRunners stops the loops of rs, all at once, and waits for them to
// end: their checks in flight are cancelled together.
func stopRunners(rs []*runner) {
	for _, r := range rs {
		if r.cancel != nil {
			r.cancel()
		}
	}
	for _, r := range rs {
		if r.cancel != nil {
			<-r.done
			r.cancel, r.done = nil, nil
		}
	}
}

// loop checks a direction every interval until ctx ends. Ticks that come
// while a check runs are dropped, so checks never pile up.
func (e *Engine) loop(ctx context.Context, d *direction, spread bool) {
	if spread {
		if !sleep(ctx, offset(d.cfg.Pair, d.cfg.Interval)) {
			return
		}
	}
	ticker := time.NewTicker(d.cfg.Interval)
	defer ticker.Stop()
	for {
		e.runCheck(ctx, d)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// offset spreads first runs over the interval. Both directions of a pair get
// the same offset, so they run concurrently.
func offset(pair string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(pair))
	return time.Duration(h.Sum64() % uint64(interval))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runCheck waits for a free slot, checks d, logs a change of state and
// tells the subscribers.
func (e *Engine) runCheck(ctx context.Context, d *direction) *Result {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return d.Latest()
	}
	prev := d.result.Load()
	r := d.check(ctx)
	<-e.sem

	if ctx.Err() != nil && r.State == StateError {
		// Cancelled by a reload or shutdown: not news about the databases.
		return r
	}
	e.logChange(prev, r)
	e.notify(r)
	return r
}

func (e *Engine) logChange(prev, r *Result) {
	if prev != nil && prev.State == r.State {
		return
	}
	log := e.log.With("pair", r.Pair, "direction", r.Direction,
		"source_database", r.Source, "target_database", r.Target)
	switch r.State {
	case StateInSync:
		log.Info("Direction in sync")
	case StateOutOfSync:
		log.Warn("Direction out of sync", "reason", r.Reason,
			"lag_seconds", r.Lag.Seconds(), "rows_missing", r.RowsMissing)
	case StateError:
		log.Error("Direction check failing", "err", r.Error)
	}
}

// DirectionStatus is a configured direction and its latest result.
type DirectionStatus struct {
	Config config.Direction
	// Latest is nil until the direction's first check.
	Latest *Result
}

// Status returns every configured direction with its latest result, ordered
// by pair and direction.
func (e *Engine) Status() []DirectionStatus {
	dirs := e.view.Load().dirs
	out := make([]DirectionStatus, len(dirs))
	for i, d := range dirs {
		out[i] = DirectionStatus{Config: d.cfg, Latest: d.Latest()}
	}
	return out
}
