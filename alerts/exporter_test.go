package alerts_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
	"github.com/spengler-dev/spengler/server"
)

// exported is what a Spengler exporter exports: every metric name it
// describes or emits, and the label names of the ones it emitted.
type exported struct {
	names  map[string]bool
	labels map[string]map[string]bool
}

// sampleConfig is a configuration with one two-way pair with a heartbeat,
// enough for the exporter to emit every per-direction and per-database
// metric.
const sampleConfig = `
global: {interval: 1m, timeout: 5s, max_lag: 1m, max_rows: 10}
databases:
  east: {driver: postgres, dsn: "postgres://spengler@127.0.0.1:1/app"}
  west: {driver: postgres, dsn: "postgres://spengler@127.0.0.1:2/app"}
pairs:
  - name: orders
    left: east
    right: west
    selector: select id, created_at as ts from orders order by id desc limit 10
    validator: select count(*) from orders where id = $1
    heartbeat: {table: spengler_heartbeat}
`

// exporterName is the name main.go gives the build-info collector.
const exporterName = "spengler"

// exporterMetrics builds the registry main.go builds (Go and process
// collectors, build info, the engine's exporter and the config reloader),
// runs one check of every direction of sampleConfig against stand-in
// databases, and returns the names that the collectors describe and the
// metrics that one scrape then returns.
func exporterMetrics(t *testing.T) *exported {
	t.Helper()
	file := filepath.Join(t.TempDir(), "spengler.yml")
	if err := os.WriteFile(file, []byte(sampleConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	engine := collector.New(collector.Options{Open: openStandIn})
	t.Cleanup(engine.Close)
	reloader := server.NewReloader(file, engine, nil)
	if err := reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector(exporterName),
		collector.NewExporter(engine),
		reloader,
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	engine.CheckAll(ctx)

	ex := &exported{names: map[string]bool{}, labels: map[string]map[string]bool{}}
	for _, c := range cs {
		for _, name := range describedNames(t, c) {
			ex.names[name] = true
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		ex.names[f.GetName()] = true
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		ex.labels[f.GetName()] = labels
	}
	// The stand-ins answer, so every per-direction metric must be there.
	for _, name := range []string{
		"spengler_replication_in_sync", "spengler_replication_heartbeat_age_seconds",
		"spengler_replication_rows_divergent", "spengler_database_up",
		"spengler_config_last_reload_successful", "spengler_build_info",
	} {
		if _, ok := ex.labels[name]; !ok {
			t.Fatalf("the exporter did not emit %s after a check; emitted: %v", name, ex.labels)
		}
	}
	return ex
}

// descName finds the metric name in the text of a [prometheus.Desc], which
// has no accessor for it.
var descName = regexp.MustCompile(`^Desc\{fqName: "([a-zA-Z_:][a-zA-Z0-9_:]*)"`)

// describedNames returns the metric names c sends to Describe.
func describedNames(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var names []string
	for d := range ch {
		m := descName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the metric name from %s", d)
		}
		names = append(names, m[1])
	}
	return names
}

// standIn is a database that holds every id: its selector returns one fresh
// row, its validator finds every id asked about, and it has a fresh
// heartbeat of every origin. It exists only so that the engine produces
// results to export.
type standIn struct{}

func openStandIn(*config.Database, time.Duration) (db.DB, error) { return standIn{}, nil }

func (standIn) Do(_ context.Context, req db.Request) (db.Response, error) {
	var resp db.Response
	if req.Select != nil {
		resp.Rows = []db.Row{{ID: "1", TS: time.Now()}}
	}
	if req.Probe != nil {
		resp.Answers = make([]db.Answer, len(req.Probe.IDs))
		for i := range resp.Answers {
			resp.Answers[i].Present = true
		}
	}
	if hb := req.Heartbeat; hb != nil && hb.WriteUS == 0 {
		resp.HeartbeatUS, resp.HeartbeatFound = time.Now().UnixMicro(), true
	}
	return resp, nil
}

func (standIn) Close() {}

func TestExporterMetricsFound(t *testing.T) {
	ex := exporterMetrics(t)
	var own []string
	for name := range ex.names {
		if strings.HasPrefix(name, "spengler_") {
			own = append(own, name)
		}
	}
	if len(own) < 10 {
		t.Errorf("found only %d spengler_ metrics: %v", len(own), own)
	}
	for _, l := range []string{"pair", "direction", "source", "target"} {
		if !ex.labels["spengler_replication_in_sync"][l] {
			t.Errorf("spengler_replication_in_sync has no label %q", l)
		}
	}
}
