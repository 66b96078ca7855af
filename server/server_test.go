package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
)

// htmlError is an error text that would run script if a page showed it
// unescaped.
const htmlError = `relation "<script>alert('owned')</script>" does not exist`

// fakeDB stands in for a database so that these tests can produce every
// state without a server: it returns its rows to a selector, answers a
// validator with whether it holds the id, or fails every request.
type fakeDB struct {
	rows []db.Row
	has  map[string]bool
	err  error
}

func (f *fakeDB) Do(_ context.Context, req db.Request) (db.Response, error) {
	if f.err != nil {
		return db.Response{}, f.err
	}
	var resp db.Response
	if req.Select != nil {
		resp.Rows = f.rows[:min(len(f.rows), req.Select.MaxRows)]
	}
	if req.Probe != nil {
		for _, id := range req.Probe.IDs {
			resp.Answers = append(resp.Answers, db.Answer{Present: f.has[id]})
		}
	}
	return resp, nil
}

func (f *fakeDB) Close() {}

// fakeDatabases are the databases of testConfig, by name: east and west hold
// the same rows, idle has none, broken fails with htmlError.
func fakeDatabases() map[string]*fakeDB {
	rows := []db.Row{{ID: "3"}, {ID: "2"}, {ID: "1"}}
	has := map[string]bool{"1": true, "2": true, "3": true}
	return map[string]*fakeDB{
		"east":   {rows: rows, has: has},
		"west":   {rows: rows, has: has},
		"idle":   {has: map[string]bool{}},
		"broken": {err: errors.New(htmlError)},
	}
}

// testConfig has a healthy two-way pair, a pair whose selector finds
// nothing (out of sync) and a pair whose target fails (error).
const testConfig = `
global: {interval: 1h, timeout: 5s, max_lag: 2h, max_rows: 10}
databases:
  east: {driver: postgres, dsn: "postgres://mon@east.invalid/app"}
  west: {driver: postgres, dsn: "postgres://mon@west.invalid/app"}
  idle: {driver: postgres, dsn: "postgres://mon@idle.invalid/app"}
  broken: {driver: postgres, dsn: "postgres://mon@broken.invalid/app"}
pairs:
  - name: orders
    left: east
    right: west
    selector: select id from orders order by id desc limit 10
    validator: select count(*) from orders where id = $1
  - name: quiet
    left: idle
    right: west
    directions: [left_to_right]
    selector: select id from orders order by id desc limit 10
    validator: select count(*) from orders where id = $1
  - name: failing
    left: east
    right: broken
    directions: [left_to_right]
    selector: select id from orders order by id desc limit 10
    validator: select count(*) from orders where id = $1
`

// fixture is a handler over an engine of fake databases, with its
// configuration file.
type fixture struct {
	t        *testing.T
	engine   *collector.Engine
	reloader *Reloader
	handler  http.Handler
	file     string
}

// newFixture writes cfg to a file and builds the handler over it. Nothing is
// loaded or checked until the test says so.
func newFixture(t *testing.T, cfg string) *fixture {
	t.Helper()
	fakes := fakeDatabases()
	var mu sync.Mutex
	open := func(c *config.Database, _ time.Duration) (db.DB, error) {
		mu.Lock()
		defer mu.Unlock()
		if f, ok := fakes[c.Name]; ok {
			return f, nil
		}
		return &fakeDB{err: errors.New("no such database")}, nil
	}
	f := &fixture{t: t, file: filepath.Join(t.TempDir(), "spengler.yml")}
	f.write(cfg)
	f.engine = collector.New(collector.Options{Open: open})
	t.Cleanup(f.engine.Close)
	f.reloader = NewReloader(f.file, f.engine, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector.NewExporter(f.engine), f.reloader)
	f.handler = Handler(Options{
		Engine: f.engine, Reloader: f.reloader, Gatherer: reg, Version: "1.2.3-test",
	})
	return f
}

// loaded returns a fixture with testConfig loaded and every direction
// checked once.
func loaded(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, testConfig)
	if err := f.reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	f.engine.CheckAll(t.Context())
	return f
}

func (f *fixture) write(cfg string) {
	f.t.Helper()
	if err := os.WriteFile(f.file, []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// do sends a request to the handler and returns the response and its body.
func (f *fixture) do(method, path string, header ...string) (*http.Response, string) {
	f.t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	resp := rec.Result()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, string(body)
}

// get sends a GET and fails the test unless it answers 200.
func (f *fixture) get(path string, header ...string) (*http.Response, string) {
	f.t.Helper()
	resp, body := f.do(http.MethodGet, path, header...)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, body)
	}
	return resp, body
}

func (f *fixture) status() Status {
	f.t.Helper()
	_, body := f.get("/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		f.t.Fatalf("decode /status: %v\n%s", err, body)
	}
	return st
}

// metric returns the value of an unlabelled series of /metrics.
func (f *fixture) metric(name string) string {
	f.t.Helper()
	_, body := f.get("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	f.t.Fatalf("/metrics has no %s", name)
	return ""
}

func TestStatusJSONShape(t *testing.T) {
	f := loaded(t)
	resp, body := f.get("/status")
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}

	// The keys are a contract (DESIGN.md): check them on the raw document.
	var doc struct {
		GeneratedAt string           `json:"generated_at"`
		Config      map[string]any   `json:"config"`
		Databases   []map[string]any `json:"databases"`
		Pairs       []struct {
			Name       string           `json:"name"`
			Directions []map[string]any `json:"directions"`
		} `json:"pairs"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339Nano, doc.GeneratedAt); err != nil {
		t.Errorf("generated_at %q: %v", doc.GeneratedAt, err)
	}
	if doc.Config["last_reload_successful"] != true || doc.Config["file"] != f.file {
		t.Errorf("config %v, want the file and a successful load", doc.Config)
	}
	var names []string
	for _, p := range doc.Pairs {
		names = append(names, p.Name)
		for _, d := range p.Directions {
			for _, key := range []string{
				"direction", "source", "target", "state", "in_sync", "success", "lag_seconds",
				"last_check", "last_in_sync", "duration_seconds", "rows_checked",
				"rows_missing", "rows_pending", "missing_ids", "checks",
				"interval_seconds", "max_lag_seconds",
			} {
				if _, ok := d[key]; !ok {
					t.Errorf("%s %v: no key %q", p.Name, d["direction"], key)
				}
			}
			if ids, ok := d["missing_ids"].([]any); !ok || ids == nil {
				t.Errorf("%s %v: missing_ids %v, want a list", p.Name, d["direction"], d["missing_ids"])
			}
		}
	}
	if want := []string{"failing", "orders", "quiet"}; !cmp.Equal(names, want) {
		t.Errorf("pairs %v, want %v (sorted by name)", names, want)
	}
	if len(doc.Databases) != 4 || doc.Databases[0]["name"] != "broken" {
		t.Errorf("databases %v, want the four by name", doc.Databases)
	}

	st := f.status()
	type row struct {
		Pair, Direction, Source, Target, State string
		InSync, Success                        bool
		RowsChecked                            int
		Error                                  string
		Checked, EverInSync                    bool
	}
	var got []row
	for _, p := range st.Pairs {
		for _, d := range p.Directions {
			got = append(got, row{p.Name, d.Direction, d.Source, d.Target, d.State,
				d.InSync, d.Success, d.RowsChecked, d.Error, d.LastCheck != nil, d.LastInSync != nil})
		}
	}
	want := []row{
		{"failing", "left_to_right", "east", "broken", "error", false, false, 0,
			`target "broken": ` + htmlError, true, false},
		{"orders", "left_to_right", "east", "west", "in_sync", true, true, 3, "", true, true},
		{"orders", "right_to_left", "west", "east", "in_sync", true, true, 3, "", true, true},
		{"quiet", "left_to_right", "idle", "west", "out_of_sync", false, true, 0, "", true, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/status directions (-want +got):\n%s", diff)
	}
}

func TestStatusBeforeFirstCheck(t *testing.T) {
	f := newFixture(t, testConfig)
	if st := f.status(); st.Config.LastReloadSuccessful || len(st.Pairs) != 0 {
		t.Errorf("before any load: config %+v, %d pairs; want not loaded, none",
			st.Config, len(st.Pairs))
	}
	if err := f.reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	st := f.status()
	if !st.Config.LastReloadSuccessful || st.Config.LastReloadSuccessTime == nil {
		t.Errorf("after a load: config %+v, want loaded with a time", st.Config)
	}
	d := st.Pairs[1].Directions[0]
	if d.State != StateUnknown || d.LastCheck != nil || d.LastInSync != nil || d.InSync ||
		d.IntervalSeconds != 3600 || d.MaxLagSeconds != 7200 {
		t.Errorf("unchecked direction %+v, want unknown, never checked, with its settings", d)
	}
	for _, db := range st.Databases {
		if db.Up != nil {
			t.Errorf("database %s up = %v before any use, want null", db.Name, *db.Up)
		}
	}
}

func TestPageOrJSON(t *testing.T) {
	f := loaded(t)
	want := f.status()
	want.GeneratedAt = time.Time{}
	cases := []struct {
		name     string
		header   []string
		wantJSON bool
	}{
		{"no headers", nil, false},
		{"browser", []string{"Accept",
			"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, false},
		{"curl", []string{"Accept", "*/*"}, false},
		{"accept json", []string{"Accept", "application/json"}, true},
		{"accept json among others", []string{"Accept", "text/plain, application/json"}, true},
		{"content-type json", []string{"Content-Type", "application/json"}, true},
		{"content-type json charset", []string{"Content-Type", "application/json; charset=utf-8"}, true},
		{"content-type form", []string{"Content-Type", "application/x-www-form-urlencoded"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get("/", tc.header...)
			ct := resp.Header.Get("Content-Type")
			if !tc.wantJSON {
				if ct != "text/html; charset=utf-8" || !strings.HasPrefix(body, "<!DOCTYPE html>") {
					t.Errorf("Content-Type %q, body %.40q: want the HTML page", ct, body)
				}
				return
			}
			if ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var got Status
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("decode: %v\n%s", err, body)
			}
			got.GeneratedAt = time.Time{}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("JSON at / differs from /status (-status +/):\n%s", diff)
			}
		})
	}
}

func TestUnknownPathsAndMethods(t *testing.T) {
	f := loaded(t)
	cases := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/status/x", http.StatusNotFound},
		{http.MethodPost, "/status", http.StatusMethodNotAllowed},
		{http.MethodGet, "/-/reload", http.StatusMethodNotAllowed},
		{http.MethodPut, "/-/reload", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/-/reload", http.StatusMethodNotAllowed},
		{http.MethodHead, "/-/healthy", http.StatusOK},
	}
	for _, tc := range cases {
		resp, body := f.do(tc.method, tc.path)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: status %d, want %d: %s", tc.method, tc.path, resp.StatusCode, tc.want, body)
		}
		if tc.want == http.StatusMethodNotAllowed && tc.path == "/-/reload" &&
			!strings.Contains(resp.Header.Get("Allow"), http.MethodPost) {
			t.Errorf("%s %s: Allow %q, want POST listed", tc.method, tc.path, resp.Header.Get("Allow"))
		}
	}
	if got := f.metric("spengler_config_last_reload_successful"); got != "1" {
		t.Errorf("a refused reload request changed the reload gauge to %s", got)
	}
}

func TestHealthyAndReady(t *testing.T) {
	f := newFixture(t, testConfig)
	if resp, body := f.do(http.MethodGet, "/-/healthy"); resp.StatusCode != http.StatusOK ||
		body != "Healthy\n" {
		t.Errorf("/-/healthy: %d %q, want 200 Healthy", resp.StatusCode, body)
	}
	if resp, _ := f.do(http.MethodGet, "/-/ready"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/-/ready before a config is loaded: %d, want 503", resp.StatusCode)
	}
	f.write("pairs: [")
	if err := f.reloader.Reload(); err == nil {
		t.Fatal("a broken file loaded")
	}
	if resp, _ := f.do(http.MethodGet, "/-/ready"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/-/ready after a failed first load: %d, want 503", resp.StatusCode)
	}
	f.write(testConfig)
	if err := f.reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	if resp, body := f.do(http.MethodGet, "/-/ready"); resp.StatusCode != http.StatusOK ||
		body != "Ready\n" {
		t.Errorf("/-/ready after a load: %d %q, want 200 Ready", resp.StatusCode, body)
	}
	// A later bad file keeps the loaded config: still ready.
	f.write("pairs: [")
	f.do(http.MethodPost, "/-/reload")
	if resp, _ := f.do(http.MethodGet, "/-/ready"); resp.StatusCode != http.StatusOK {
		t.Errorf("/-/ready after a failed reload: %d, want 200", resp.StatusCode)
	}

	h := Handler(Options{Engine: f.engine, Gatherer: prometheus.NewRegistry()})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/-/ready", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready without a reloader: %d, want 503", rec.Code)
	}
}

func TestReload(t *testing.T) {
	f := loaded(t)
	if got := f.metric("spengler_config_last_reload_successful"); got != "1" {
		t.Fatalf("reload gauge %s after the first load, want 1", got)
	}
	firstLoad := f.status().Config.LastReloadSuccessTime

	// A good file: the new pair shows, the removed one goes.
	f.write(strings.Replace(testConfig, "name: quiet", "name: calm", 1))
	resp, body := f.do(http.MethodPost, "/-/reload")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "reloaded") {
		t.Fatalf("POST /-/reload: %d %q, want 200", resp.StatusCode, body)
	}
	if got := pairNames(f.status()); got != "calm failing orders" {
		t.Errorf("pairs after reload: %s, want calm failing orders", got)
	}

	// A bad file: 500 with the reason, the running config stays, gauge 0.
	f.write(strings.Replace(testConfig, "max_rows: 10}", "max_rows: 10, bogus_key: 1}", 1))
	resp, body = f.do(http.MethodPost, "/-/reload")
	if resp.StatusCode != http.StatusInternalServerError ||
		!strings.Contains(body, `global.bogus_key: unknown key "bogus_key"`) ||
		!strings.Contains(body, f.file) || !strings.Contains(body, "previous configuration") {
		t.Errorf("POST /-/reload of a bad file: %d %q, want 500 naming file, key and outcome",
			resp.StatusCode, body)
	}
	st := f.status()
	if got := pairNames(st); got != "calm failing orders" {
		t.Errorf("pairs after a failed reload: %s, want the previous ones", got)
	}
	if st.Config.LastReloadSuccessful || !strings.Contains(st.Config.LastReloadError, "bogus_key") {
		t.Errorf("/status config after a failed reload: %+v", st.Config)
	}
	if st.Config.LastReloadSuccessTime == nil || st.Config.LastReloadSuccessTime.Before(*firstLoad) {
		t.Errorf("last good load %v, want kept from the good reload", st.Config.LastReloadSuccessTime)
	}
	if got := f.metric("spengler_config_last_reload_successful"); got != "0" {
		t.Errorf("reload gauge %s after a failed reload, want 0", got)
	}
	if got := f.metric("spengler_config_last_reload_success_timestamp_seconds"); got == "0" {
		t.Errorf("last success timestamp reset by a failed reload")
	}
	_, page := f.get("/")
	if !strings.Contains(page, `id="reload-error"`) || !strings.Contains(page, "bogus_key") {
		t.Errorf("the page does not show the failed reload")
	}

	// Fixed again: back to 1, and the banner goes.
	f.write(testConfig)
	if resp, body := f.do(http.MethodPost, "/-/reload"); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /-/reload: %d %q, want 200", resp.StatusCode, body)
	}
	if got := f.metric("spengler_config_last_reload_successful"); got != "1" {
		t.Errorf("reload gauge %s after a good reload, want 1", got)
	}
	if _, page := f.get("/"); strings.Contains(page, `id="reload-error"`) {
		t.Errorf("the page still shows the failed reload after a good one")
	}
	if got := pairNames(f.status()); got != "failing orders quiet" {
		t.Errorf("pairs after reload: %s, want failing orders quiet", got)
	}
}

func TestReloadMissingFile(t *testing.T) {
	f := loaded(t)
	if err := os.Remove(f.file); err != nil {
		t.Fatal(err)
	}
	resp, body := f.do(http.MethodPost, "/-/reload")
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "cannot read file") {
		t.Errorf("reload of a missing file: %d %q, want 500 saying so", resp.StatusCode, body)
	}
	if got := pairNames(f.status()); got != "failing orders quiet" {
		t.Errorf("pairs: %s, want the running ones", got)
	}
}

func TestReloadWithoutReloader(t *testing.T) {
	e := collector.New(collector.Options{})
	t.Cleanup(e.Close)
	h := Handler(Options{Engine: e, Gatherer: prometheus.NewRegistry()})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/-/reload", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("POST /-/reload without a reloader: %d, want 503", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusOK ||
		st.Pairs == nil || st.Databases == nil {
		t.Errorf("/status of an empty engine: %d %q (%v), want empty lists", rec.Code, rec.Body, err)
	}
}

func TestMetricsPath(t *testing.T) {
	e := collector.New(collector.Options{})
	t.Cleanup(e.Close)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "probe_gauge", Help: "A gauge."}))
	for _, tc := range []struct {
		path, pageLink string
	}{
		{"", `href="metrics"`},
		{"/custom/metrics", `href="custom/metrics"`},
	} {
		h := Handler(Options{Engine: e, Gatherer: reg, MetricsPath: tc.path})
		metricsAt := tc.path
		if metricsAt == "" {
			metricsAt = "/metrics"
		}
		for path, want := range map[string]string{metricsAt: "probe_gauge 0", "/": tc.pageLink} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
				t.Errorf("metrics path %q: GET %s: %d, want %q in\n%s",
					tc.path, path, rec.Code, want, rec.Body)
			}
		}
	}
	// With the metrics at /, the page steps aside.
	h := Handler(Options{Engine: e, Gatherer: reg, MetricsPath: "/"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if !strings.Contains(rec.Body.String(), "probe_gauge 0") {
		t.Errorf("metrics path /: GET / gave %q, want the metrics", rec.Body)
	}
}

func pairNames(st Status) string {
	var names []string
	for _, p := range st.Pairs {
		names = append(names, p.Name)
	}
	return strings.Join(names, " ")
}
