// Command spengler-demo shows Spengler at work on real replication: it starts two
// throwaway PostgreSQL servers, left and right, replicating both ways with logical
// replication, writes a row on each side every second, and runs Spengler against
// them until interrupted, when it stops everything and removes what it made.
//
// Usage:
//
//	go run ./cmd/spengler-demo -spengler ./spengler -listen :8442
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// demoDB is the database the two servers replicate.
const demoDB = "app"

// childStopTimeout bounds the wait for Spengler to exit after SIGTERM.
const childStopTimeout = 10 * time.Second

// configTemplate is the Spengler configuration the demo runs with; the two
// placeholders are the DSNs of left and right.
const configTemplate = `global:
  interval: 5s
  timeout: 3s
  max_lag: 15s
  max_rows: 20
databases:
  left:
    driver: postgres
    dsn: %s
  right:
    driver: postgres
    dsn: %s
pairs:
  - name: demo
    left: left
    right: right
    left_to_right:
      selector: select id, created_at as ts from a_rows order by id desc limit 20
      validator: select count(*) from a_rows where id = $1
    right_to_left:
      selector: select id, created_at as ts from b_rows order by id desc limit 20
      validator: select count(*) from b_rows where id = $1
`

func main() {
	os.Exit(run())
}

// run does the work of main and returns the exit code, so that deferred cleanup
// runs before the process exits.
func run() int {
	spengler := flag.String("spengler", "./spengler", "path of the Spengler binary to run")
	listen := flag.String("listen", ":8442", "address for Spengler to listen on")
	flag.Parse()
	if err := demo(*spengler, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "spengler-demo:", err)
		return 1
	}
	return 0
}

// demo runs the demo until SIGINT or SIGTERM, or until Spengler exits.
func demo(spengler, listen string) error {
	if _, err := dbtest.PostgresBinDir(); err != nil {
		return err
	}
	if _, err := exec.LookPath(spengler); err != nil {
		return fmt.Errorf("spengler binary %q: %w", spengler, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "spengler-demo-")
	if err != nil {
		return fmt.Errorf("create temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	fmt.Println("Starting PostgreSQL servers left and right in", dir)
	left, right, err := startServers(ctx, dir)
	if left != nil {
		defer left.Close()
	}
	if right != nil {
		defer right.Close()
	}
	var l *dbtest.Logical
	if err == nil {
		l, err = dbtest.SetupLogical(ctx, left, right, demoDB)
	}
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted while starting the servers")
		}
		return err
	}

	writerCtx, stopWriter := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { write(writerCtx, l) })
	defer wg.Wait()
	defer stopWriter()

	cfgPath := filepath.Join(dir, "spengler.yml")
	cfg := fmt.Sprintf(configTemplate, left.DSN(demoDB), right.DSN(demoDB))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}

	cmd := exec.Command(spengler, "--config.file="+cfgPath, "--web.listen-address="+listen)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// Its own process group keeps a terminal's Ctrl-C for us: we stop it first,
	// then the writer and the servers. SIGTERM reaches it if we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := dbtest.StartProcess(cmd); err != nil {
		return fmt.Errorf("start spengler %q: %w", spengler, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	base := baseURL(listen)
	fmt.Printf("\nSpengler is running (pid %d). Look at:\n", cmd.Process.Pid)
	fmt.Printf("  %s/         landing page\n", base)
	fmt.Printf("  %s/metrics  metrics\n", base)
	fmt.Printf("  %s/status   status as JSON\n", base)
	fmt.Printf("  config file: %s\n", cfgPath)
	fmt.Printf("  left:  %s\n  right: %s\n", left.DSN(demoDB), right.DSN(demoDB))
	fmt.Println("A row is written on each side every second. Press Ctrl-C to stop.")

	select {
	case err := <-exited:
		if err == nil {
			err = errors.New("exited")
		}
		return fmt.Errorf("spengler %q: %w", spengler, err)
	case <-ctx.Done():
	}
	fmt.Println("\nStopping Spengler, the writer and the servers")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(childStopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
	return nil
}

// startServers starts left and right in parallel; either may be non-nil on error.
func startServers(ctx context.Context, dir string) (left, right *dbtest.PG, err error) {
	var errL, errR error
	var wg sync.WaitGroup
	wg.Go(func() { left, errL = dbtest.StartPG(ctx, "left", dir) })
	wg.Go(func() { right, errR = dbtest.StartPG(ctx, "right", dir) })
	wg.Wait()
	return left, right, errors.Join(errL, errR)
}

// write inserts a row on each side of l every second until ctx ends.
func write(ctx context.Context, l *dbtest.Logical) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for _, insert := range []func(context.Context, int) error{l.InsertA, l.InsertB} {
			if err := insert(ctx, 1); err != nil && ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "spengler-demo: write row:", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// baseURL turns a listen address into a URL a browser on this machine can open.
func baseURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
