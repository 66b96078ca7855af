package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
)

// benchPairs writes a configuration of n two-way pairs over two fake
// databases, and returns a handler over it after one check of every
// direction, with the registry main builds.
func benchPairs(b *testing.B, n int) http.Handler {
	b.Helper()
	var cfg strings.Builder
	cfg.WriteString("databases:\n" +
		"  east: {driver: postgres, dsn: \"postgres://mon@east.invalid/app\"}\n" +
		"  west: {driver: postgres, dsn: \"postgres://mon@west.invalid/app\"}\n" +
		"pairs:\n")
	for i := range n {
		fmt.Fprintf(&cfg, "  - {name: pair-%04d, left: east, right: west, "+
			"selector: select id from t order by id desc limit 20, "+
			"validator: \"select count(*) from t where id = $1\"}\n", i)
	}
	file := filepath.Join(b.TempDir(), "spengler.yml")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	fakes := fakeDatabases()
	engine := collector.New(collector.Options{
		Open: func(c *config.Database, _ time.Duration) (db.DB, error) { return fakes[c.Name], nil },
	})
	b.Cleanup(engine.Close)
	reloader := NewReloader(file, engine, nil)
	if err := reloader.Reload(); err != nil {
		b.Fatal(err)
	}
	engine.CheckAll(context.Background())
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collector.NewExporter(engine), reloader)
	return Handler(Options{Engine: engine, Reloader: reloader, Gatherer: reg})
}

// BenchmarkEndpoints1000Pairs serves /metrics (plain and gzip, as
// Prometheus asks for it) and /status with 1,000 pairs.
func BenchmarkEndpoints1000Pairs(b *testing.B) {
	h := benchPairs(b, 1000)
	for _, bc := range []struct {
		name, path, encoding string
	}{
		{"metrics", "/metrics", ""},
		{"metrics-gzip", "/metrics", "gzip"},
		{"status", "/status", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, bc.path, nil)
				if bc.encoding != "" {
					req.Header.Set("Accept-Encoding", bc.encoding)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d", bc.path, rec.Code)
				}
				b.SetBytes(int64(rec.Body.Len()))
			}
		})
	}
}
