package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/internal/dbtest"
	"github.com/spengler-dev/spengler/server"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// Timing of the test configurations: a broken direction must show within
// maxLag + interval + timeout.
const (
	interval = time.Second
	timeout  = time.Second
	maxLag   = 3 * time.Second
	detect   = maxLag + interval + timeout
)

// syncBuffer is a log sink that tests can read while the engine writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// stack is a running Spengler: engine, reloader and HTTP server.
type stack struct {
	engine *collector.Engine
	srv    *httptest.Server
	logs   *syncBuffer
	file   string
}

// startStack writes cfg to a file and runs Spengler on it until the test ends.
func startStack(t *testing.T, cfg string) *stack {
	t.Helper()
	s := &stack{logs: &syncBuffer{}, file: filepath.Join(t.TempDir(), "spengler.yml")}
	if err := os.WriteFile(s.file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s.engine = collector.New(collector.Options{Logger: logger, Concurrency: 16})
	reloader := server.NewReloader(s.file, s.engine, logger)
	if err := reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector.NewExporter(s.engine), reloader)
	s.srv = httptest.NewServer(server.Handler(server.Options{
		Engine: s.engine, Reloader: reloader, Gatherer: reg, Logger: logger,
	}))
	if err := s.engine.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.srv.Close()
		s.engine.Close()
		if t.Failed() {
			t.Logf("spengler log:\n%s", s.logs.String())
		}
	})
	return s
}

func (s *stack) get(t *testing.T, path string, header ...string) (string, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, err %v: %s", path, resp.StatusCode, err, body)
	}
	return string(body), took
}

func (s *stack) status(t *testing.T) server.Status {
	t.Helper()
	body, _ := s.get(t, "/status")
	var st server.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("decode /status: %v", err)
	}
	return st
}

// direction returns the /status entry of one direction.
func (s *stack) direction(t *testing.T, pair, dir string) server.DirectionStatus {
	t.Helper()
	for _, p := range s.status(t).Pairs {
		for _, d := range p.Directions {
			if p.Name == pair && d.Direction == dir {
				return d
			}
		}
	}
	t.Fatalf("/status has no %s %s", pair, dir)
	return server.DirectionStatus{}
}

// waitState waits until a direction reaches state, and returns how long it took.
func (s *stack) waitState(t *testing.T, pair, dir, state string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		d := s.direction(t, pair, dir)
		if d.State == state {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s %s: state %q (reason %q) after %v, want %q",
				pair, dir, d.State, d.Reason, limit, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric returns the value of one series of /metrics, matched by name and a
// substring of its labels, and whether it was found.
func (s *stack) metric(t *testing.T, name, labels string) (string, bool) {
	t.Helper()
	body, _ := s.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, labels) {
			f := strings.Fields(line)
			return f[len(f)-1], true
		}
	}
	return "", false
}

// writer inserts a row into table on p every 200ms until the test ends.
func writer(t *testing.T, p *dbtest.PG, table string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			ictx, icancel := context.WithTimeout(ctx, time.Second)
			p.InsertRows(ictx, dbtest.EnvDB, table, 1) // fails while p is frozen or stopped
			icancel()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// envConfig is the configuration of the shared Env: the streaming pair, the
// logical pair, and any extra pairs.
func envConfig(env *dbtest.Env, extraDatabases, extraPairs string) string {
	return fmt.Sprintf(`
global:
  interval: %s
  timeout: %s
  max_lag: %s
  max_rows: 20
databases:
  primary: {driver: postgres, dsn: "%s"}
  standby: {driver: postgres, dsn: "%s"}
  left: {driver: postgres, dsn: "%s"}
  right: {driver: postgres, dsn: "%s"}
%s
pairs:
  - name: stream
    left: primary
    right: standby
    directions: [left_to_right]
    selector: select id, created_at as ts from stream_rows order by id desc limit 20
    validator: select count(*) from stream_rows where id = $1
  - name: logical
    left: left
    right: right
    left_to_right:
      selector: select id, created_at as ts from a_rows order by id desc limit 20
      validator: select count(*) from a_rows where id = $1
    right_to_left:
      selector: select id, created_at as ts from b_rows order by id desc limit 20
      validator: select count(*) from b_rows where id = $1
%s
`, interval, timeout, maxLag,
		env.Primary.DSN(dbtest.EnvDB), env.Standby.DSN(dbtest.EnvDB),
		env.Left.DSN(dbtest.EnvDB), env.Right.DSN(dbtest.EnvDB),
		extraDatabases, extraPairs)
}

// writers keeps rows coming on every writing side of the Env.
func writers(t *testing.T, env *dbtest.Env) {
	writer(t, env.Primary, dbtest.StreamTable)
	writer(t, env.Left, "a_rows")
	writer(t, env.Right, "b_rows")
}
