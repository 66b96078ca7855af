package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// sampler scrapes /metrics and /status in turn, one request at a time, as
// a Prometheus and a person would, and records how long each took. It
// also follows every direction's last check, and the exporter's memory.
type sampler struct {
	x        *exporter
	interval time.Duration

	mu       sync.Mutex
	metrics  []time.Duration
	status   []time.Duration
	failures int
	maxRSS   int64
	lastRun  map[string]float64 // by pair/direction
	maxGap   map[string]float64
}

func newSampler(x *exporter, interval time.Duration) *sampler {
	return &sampler{x: x, interval: interval, lastRun: map[string]float64{}, maxGap: map[string]float64{}}
}

// run samples every 200ms until ctx ends.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		var err error
		var families map[string]*dto.MetricFamily
		if n%2 == 0 {
			families, err = s.x.metrics(ctx)
		} else {
			_, err = s.x.status(ctx)
		}
		took := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		u, uerr := s.x.usage()
		s.mu.Lock()
		switch {
		case err != nil:
			s.failures++
		case n%2 == 0:
			s.metrics = append(s.metrics, took)
			s.follow(families)
		default:
			s.status = append(s.status, took)
		}
		if uerr == nil {
			s.maxRSS = max(s.maxRSS, u.rss)
		}
		s.mu.Unlock()
	}
}

// follow records, for every direction, the longest time between two of its
// checks seen so far.
func (s *sampler) follow(families map[string]*dto.MetricFamily) {
	f := families["spengler_check_last_run_timestamp_seconds"]
	if f == nil {
		return
	}
	for _, m := range f.GetMetric() {
		key := label(m, "pair") + "/" + label(m, "direction")
		v := m.GetGauge().GetValue()
		if old, ok := s.lastRun[key]; ok && v > old {
			s.maxGap[key] = max(s.maxGap[key], v-old)
		}
		s.lastRun[key] = v
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// report prints the latencies, and the schedule when schedule is set.
func (s *sampler) report(schedule bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Printf("  /metrics: %s\n", percentiles(s.metrics))
	fmt.Printf("  /status:  %s\n", percentiles(s.status))
	if s.failures > 0 {
		fmt.Printf("  failed requests: %d\n", s.failures)
	}
	fmt.Printf("  max resident memory: %.1f MiB\n", float64(s.maxRSS)/(1<<20))
	if !schedule {
		return
	}
	late, worst := 0, 0.0
	limit := s.interval.Seconds() + 1
	for _, gap := range s.maxGap {
		worst = max(worst, gap)
		if gap > limit {
			late++
		}
	}
	fmt.Printf("  schedule: %d directions followed; longest time between two checks of one "+
		"direction %.2fs (interval %s); directions with a gap over interval+1s: %d\n",
		len(s.maxGap), worst, s.interval, late)
}

// percentiles describes a set of durations.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("n=%d p50=%s p90=%s p99=%s max=%s", len(ds), ms(at(0.5)), ms(at(0.9)),
		ms(at(0.99)), ms(ds[len(ds)-1]))
}

// sampleFor runs a sampler for d.
func sampleFor(ctx context.Context, x *exporter, interval, d time.Duration) *sampler {
	s := newSampler(x, interval)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	s.run(ctx)
	return s
}

// checksByEngine sums spengler_checks_total for the PostgreSQL pairs (pg-)
// and the MariaDB pairs (my-).
func checksByEngine(families map[string]*dto.MetricFamily) (pg, my float64) {
	f := families["spengler_checks_total"]
	if f == nil {
		return 0, 0
	}
	for _, m := range f.GetMetric() {
		if strings.HasPrefix(label(m, "pair"), "pg-") {
			pg += m.GetCounter().GetValue()
		} else {
			my += m.GetCounter().GetValue()
		}
	}
	return pg, my
}

// healthyPhase measures the exporter while every database answers.
func healthyPhase(ctx context.Context, o options, s *servers, x *exporter) error {
	fmt.Printf("\n== healthy: every database answers, %s\n", o.phase)
	m0, err := x.metrics(ctx)
	if err != nil {
		return err
	}
	u0, err := x.usage()
	if err != nil {
		return err
	}
	r0, t0 := s.requests(), time.Now()
	pg0, my0 := checksByEngine(m0)

	smp := sampleFor(ctx, x, o.interval, o.phase)

	m1, err := x.metrics(ctx)
	if err != nil {
		return err
	}
	u1, err := x.usage()
	if err != nil {
		return err
	}
	r1, elapsed := s.requests(), time.Since(t0)
	pg1, my1 := checksByEngine(m1)
	conns, err := s.connections(ctx)
	if err != nil {
		return err
	}

	checks := (pg1 - pg0) + (my1 - my0)
	expected := float64(2*o.pairs) * elapsed.Seconds() / o.interval.Seconds()
	cpu := u1.cpu - u0.cpu
	fmt.Printf("  checks: %.0f in %s (%.0f expected from the interval: %.1f%%)\n",
		checks, elapsed.Round(time.Second), expected, 100*checks/expected)
	fmt.Printf("  CPU: %.2fs in all, %.3f CPU-seconds per 1,000 checks\n",
		cpu.Seconds(), cpu.Seconds()/(checks/1000))
	fmt.Printf("  resident memory at the end: %.1f MiB; goroutines %.0f\n",
		float64(u1.rss)/(1<<20), total(m1, "go_goroutines"))
	fmt.Printf("  connections held on each server: %v\n", conns)
	pgReq := float64(r1["pg_left"] - r0["pg_left"] + r1["pg_right"] - r0["pg_right"])
	myReq := float64(r1["my_a"] - r0["my_a"] + r1["my_b"] - r0["my_b"])
	fmt.Printf("  round trips per side per check: PostgreSQL %.3f (%.0f for %.0f checks), "+
		"MariaDB %.3f (%.0f for %.0f checks)\n",
		pgReq/(2*(pg1-pg0)), pgReq, pg1-pg0, myReq/(2*(my1-my0)), myReq, my1-my0)
	smp.report(true)
	return nil
}

// hangPhase freezes one server of each engine, measures the scrapes, then
// thaws them and waits for every direction to be in sync again.
func hangPhase(ctx context.Context, o options, s *servers, x *exporter) error {
	fmt.Printf("\n== hang: pg_right and my_b frozen (SIGSTOP), %s\n", o.phase)
	if err := s.freeze(); err != nil {
		s.thaw()
		return err
	}
	smp := sampleFor(ctx, x, o.interval, o.phase)
	m, merr := x.metrics(ctx)
	st, serr := x.status(ctx)
	thawed := time.Now()
	if err := s.thaw(); err != nil {
		return err
	}
	if merr != nil || serr != nil {
		return fmt.Errorf("scrape while frozen: %v %v", merr, serr)
	}
	failing := 0
	for _, d := range st {
		if d.State == "error" {
			failing++
		}
	}
	fmt.Printf("  directions failing at the end: %d of %d; in sync: %.0f; goroutines %.0f\n",
		failing, len(st), total(m, "spengler_replication_in_sync"), total(m, "go_goroutines"))
	smp.report(false)
	if err := s.waitInSync(ctx, x, 2*o.pairs, 2*(o.interval+o.maxLag)+time.Minute); err != nil {
		return err
	}
	fmt.Printf("  every direction in sync again %s after the thaw\n",
		time.Since(thawed).Round(time.Second))
	return nil
}

// detectPhase breaks left_to_right of every PostgreSQL pair and times the
// detection, then heals it.
func detectPhase(ctx context.Context, o options, s *servers, x *exporter) error {
	bound := o.maxLag + o.interval + o.timeout
	fmt.Printf("\n== detect: logical replication pg_left -> pg_right disabled; bound "+
		"max_lag + interval + timeout = %s\n", bound)
	if err := s.logical.BreakAToB(ctx); err != nil {
		return err
	}
	broken := time.Now()
	detected := map[string]time.Duration{}
	collateral := map[string]string{}
	want := o.pairs / 2
	if o.pairs%2 == 1 {
		want++
	}
	deadline := broken.Add(bound + 30*time.Second)
	for len(detected) < want && time.Now().Before(deadline) && ctx.Err() == nil {
		st, err := x.status(ctx)
		if err != nil {
			return err
		}
		for _, d := range st {
			key := d.Pair + "/" + d.Direction
			isBroken := strings.HasPrefix(d.Pair, "pg-") && d.Direction == "left_to_right"
			switch {
			case isBroken && !d.InSync:
				if _, ok := detected[key]; !ok {
					detected[key] = time.Since(broken)
				}
			case !isBroken && !d.InSync:
				collateral[key] = d.Reason
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	healed := time.Now()
	if err := s.logical.HealAToB(ctx); err != nil {
		return err
	}
	var times []time.Duration
	for _, d := range detected {
		times = append(times, d)
	}
	slices.Sort(times)
	fmt.Printf("  broken directions detected: %d of %d\n", len(detected), want)
	if len(times) > 0 {
		fmt.Printf("  time to detection: first %s, median %s, last %s (bound %s)\n",
			times[0].Round(100*time.Millisecond), times[len(times)/2].Round(100*time.Millisecond),
			times[len(times)-1].Round(100*time.Millisecond), bound)
	}
	fmt.Printf("  other directions seen out of sync meanwhile: %d\n", len(collateral))
	for key, reason := range collateral {
		fmt.Printf("    %s: %s\n", key, reason)
	}
	if err := s.waitInSync(ctx, x, 2*o.pairs, 2*(o.interval+o.maxLag)+time.Minute); err != nil {
		return err
	}
	fmt.Printf("  every direction in sync again %s after healing\n",
		time.Since(healed).Round(time.Second))
	return nil
}

// soakPhase runs healthy for o.soak and samples the exporter every 10s.
func soakPhase(ctx context.Context, o options, s *servers, x *exporter) error {
	fmt.Printf("\n== soak: %s, sampled every 10s\n", o.soak)
	type sample struct {
		at         time.Duration
		goroutines float64
		heap       float64
		rss        int64
		conns      int64
		checks     float64
	}
	var samples []sample
	start := time.Now()
	for {
		m, err := x.metrics(ctx)
		if err != nil {
			return err
		}
		u, err := x.usage()
		if err != nil {
			return err
		}
		conns, err := s.connections(ctx)
		if err != nil {
			return err
		}
		smp := sample{at: time.Since(start), goroutines: total(m, "go_goroutines"),
			heap: total(m, "go_memstats_heap_inuse_bytes"), rss: u.rss, conns: sum(conns),
			checks: total(m, "spengler_checks_total")}
		samples = append(samples, smp)
		if len(samples)%6 == 1 {
			fmt.Printf("  %6s goroutines %4.0f heap %5.1f MiB rss %5.1f MiB connections %2d checks %.0f\n",
				smp.at.Round(time.Second), smp.goroutines, smp.heap/(1<<20),
				float64(smp.rss)/(1<<20), smp.conns, smp.checks)
		}
		if smp.at >= o.soak {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
	first, last := samples[0], samples[len(samples)-1]
	var maxG, maxHeap float64
	var maxRSS, maxConns int64
	for _, smp := range samples {
		maxG, maxHeap = max(maxG, smp.goroutines), max(maxHeap, smp.heap)
		maxRSS, maxConns = max(maxRSS, smp.rss), max(maxConns, smp.conns)
	}
	fmt.Printf("  goroutines first %.0f last %.0f max %.0f\n", first.goroutines, last.goroutines, maxG)
	fmt.Printf("  heap in use first %.1f last %.1f max %.1f MiB\n",
		first.heap/(1<<20), last.heap/(1<<20), maxHeap/(1<<20))
	fmt.Printf("  resident first %.1f last %.1f max %.1f MiB\n",
		float64(first.rss)/(1<<20), float64(last.rss)/(1<<20), float64(maxRSS)/(1<<20))
	fmt.Printf("  connections first %d last %d max %d\n", first.conns, last.conns, maxConns)
	return nil
}
