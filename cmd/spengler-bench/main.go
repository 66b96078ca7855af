// Command spengler-bench measures a Spengler binary at scale against real
// servers: two PostgreSQL servers with two-way logical replication and two
// MariaDB servers replicating master-master, watched by many pairs (half on
// each engine), with a writer on every replicated table. Every connection of
// the exporter goes through a loopback proxy that counts the requests it
// sends, so that round trips per check are counted, not assumed.
//
// It runs these phases and prints what it measured in each:
//
//   - healthy: every database answers. Checks on time, CPU per 1,000 checks,
//     resident memory, goroutines, connections per server, round trips per
//     side per check, /metrics and /status latency.
//   - hang: one server of each engine is frozen (SIGSTOP), so every pair has a
//     side that answers nothing. /metrics and /status latency; then the
//     servers are thawed and the time until every direction is in sync again.
//   - detect: one direction of every PostgreSQL pair is broken (its logical
//     subscription disabled). The time until each broken direction is out of
//     sync, against max_lag + interval + timeout, and whether any other
//     direction left in_sync; then healing.
//   - soak (when -soak is set): everything healthy for that long, sampled
//     every 10 s: goroutines, memory, connections.
//
// At the end the exporter is stopped and no query of it may be left on any
// server.
//
// Usage:
//
//	go run ./cmd/spengler-bench -spengler ./spengler [-pairs 1000] [-soak 10m]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// options are the command-line settings of a run.
type options struct {
	spengler string
	pairs    int
	interval time.Duration
	timeout  time.Duration
	maxLag   time.Duration
	phase    time.Duration
	soak     time.Duration
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	flag.StringVar(&o.spengler, "spengler", "./spengler", "path of the Spengler binary to measure")
	flag.IntVar(&o.pairs, "pairs", 1000, "number of pairs, half on PostgreSQL, half on MariaDB")
	flag.DurationVar(&o.interval, "interval", 15*time.Second, "check interval of every pair")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "timeout of every check")
	flag.DurationVar(&o.maxLag, "max-lag", 30*time.Second, "max_lag of every pair")
	flag.DurationVar(&o.phase, "phase", 60*time.Second, "length of the healthy and hang phases")
	flag.DurationVar(&o.soak, "soak", 0, "length of the soak phase; 0 skips it")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := measure(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "spengler-bench:", err)
		return 1
	}
	return 0
}

// measure sets up the servers, runs the exporter and every phase.
func measure(ctx context.Context, o options) error {
	if _, err := exec.LookPath(o.spengler); err != nil {
		return fmt.Errorf("spengler binary %q: %w", o.spengler, err)
	}
	if err := dbtest.CheckBinaries(); err != nil {
		return err
	}
	if err := dbtest.CheckMariaDB(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "spengler-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Printf("spengler-bench: %d pairs, interval %s, timeout %s, max_lag %s\n",
		o.pairs, o.interval, o.timeout, o.maxLag)
	start := time.Now()
	s, err := startServers(ctx, dir)
	if s != nil {
		defer s.close()
	}
	if err != nil {
		return err
	}
	fmt.Printf("servers started in %s\n", time.Since(start).Round(time.Millisecond))

	writeCtx, stopWriters := context.WithCancel(ctx)
	var writers sync.WaitGroup
	s.write(writeCtx, &writers)
	defer writers.Wait()
	defer stopWriters()

	cfgPath := filepath.Join(dir, "spengler.yml")
	if err := os.WriteFile(cfgPath, []byte(s.config(o)), 0o600); err != nil {
		return err
	}
	x, err := startExporter(o.spengler, cfgPath)
	if err != nil {
		return err
	}
	defer x.stop()

	if err := x.waitAllChecked(ctx, 2*o.pairs, o.interval+o.timeout+30*time.Second); err != nil {
		return err
	}
	fmt.Printf("every direction checked once after %s\n", time.Since(x.started).Round(time.Second))

	if err := s.waitInSync(ctx, x, 2*o.pairs, o.interval+o.maxLag+time.Minute); err != nil {
		return err
	}
	phases := []func(context.Context, options, *servers, *exporter) error{
		healthyPhase, hangPhase, detectPhase,
	}
	if o.soak > 0 {
		phases = append(phases, soakPhase)
	}
	for _, phase := range phases {
		if err := phase(ctx, o, s, x); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
	}

	stopWriters()
	writers.Wait()
	if err := x.stop(); err != nil {
		return err
	}
	return s.reportLeftovers(ctx)
}
