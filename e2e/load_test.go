package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/internal/dbtest"
	"github.com/spengler-dev/spengler/server"
)

// heapBound is how much the heap may grow while a selector returns a
// million rows: a guard against keeping them, not a measure of speed.
const heapBound = 64 << 20

// heapSampler records the largest heap seen while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			h.peak.Store(max(h.peak.Load(), ms.HeapAlloc))
			select {
			case <-h.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return h
}

// end stops the sampler and returns the largest heap it saw.
func (h *heapSampler) end() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

// heapAfterGC returns the live heap.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// millionPair is a one-way pair whose selector returns a million rows, with
// a timeout long enough to read them all on a busy machine, and an interval
// no shorter than that timeout.
func millionPair(left, right, selector, validator string) string {
	return fmt.Sprintf(`
  - name: million
    left: %s
    right: %s
    directions: [left_to_right]
    interval: 5s
    timeout: 5s
    max_lag: 1m
    max_rows: 20
    selector: %s
    validator: %s
`, left, right, selector, validator)
}

// checkMillion checks pair million: capped at max_rows, in sync, and the
// heap does not grow by the rows.
func checkMillion(t *testing.T, s *stack, others [][2]string) {
	t.Helper()
	log := watchPair(t, s, "million")
	base := heapAfterGC()
	h := sampleHeap()
	from := 0
	for range 3 {
		var r *collector.Result
		r, from = log.next(t, from, "left_to_right", 30*time.Second)
		t.Logf("check of a million rows: %s in %v", r.State, r.Duration.Round(time.Millisecond))
		if r.State != collector.StateInSync || r.RowsSelected != 20 || r.RowsChecked != 20 {
			t.Errorf("million: %s %q, %d rows selected, %d checked; want in sync, capped at 20",
				r.State, r.Reason, r.RowsSelected, r.RowsChecked)
		}
	}
	peak := h.end()
	after := heapAfterGC()
	t.Logf("heap: %d KiB before, %d KiB at most during, %d KiB after", base>>10, peak>>10, after>>10)
	if peak > base+heapBound || after > base+heapBound {
		t.Errorf("heap grew from %d KiB to %d KiB (at most %d KiB) over three checks of a million rows",
			base>>10, after>>10, peak>>10)
	}
	st := s.direction(t, "million", "left_to_right")
	if st.RowsSelected != 20 || !st.InSync {
		t.Errorf("/status of million: %+v, want 20 rows selected, in sync", st)
	}
	waitInSync(t, s, others, detect)
}

func TestMillionRowSelectorPostgres(t *testing.T) {
	env := dbtest.SharedEnv(t)
	checkGoroutines(t)
	writers(t, env)
	s := startStack(t, envConfig(env, "", millionPair("left", "right",
		"select g as id from generate_series(1, 1000000) g order by g desc",
		"select count(*) from (select 1) s where $1::bigint between 1 and 1000000")))
	checkMillion(t, s, allDirections)
	s.engine.Close()
	waitPGSpengler(t, env.Left, "true", 0, 5*time.Second)
}

func TestMillionRowSelectorMariaDB(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	checkGoroutines(t)
	mariaWriters(t, env)
	s := startStack(t, mariaConfig(env, "", millionPair("a", "b",
		"select seq as id from seq_1_to_1000000 order by seq desc",
		"select count(*) from seq_1_to_1000000 where seq = ?")))
	checkMillion(t, s, pairDirs("maria"))
	s.engine.Close()
	waitNoMonitorThreads(t, env.A, 0, true, 5*time.Second)
}

// Configurations of the reload tests: pairs stream and logical are the same
// in both; flip is changed, flop and the database extra come and go,
// broken fails every check and stays.
const (
	stormA = `
  - name: flip
    left: left
    right: right
    directions: [left_to_right]
    max_lag: 5s
    selector: select id, created_at as ts from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = $1
  - name: broken
    left: left
    right: right
    directions: [left_to_right]
    selector: select id from no_such_table
    validator: select count(*) from a_rows where id = $1
`
	stormB = `
  - name: flip
    left: left
    right: right
    directions: [left_to_right]
    max_lag: 6s
    selector: select id, created_at as ts from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = $1
  - name: broken
    left: left
    right: right
    directions: [left_to_right]
    selector: select id from no_such_table
    validator: select count(*) from a_rows where id = $1
  - name: flop
    left: right
    right: extra
    directions: [left_to_right]
    selector: select id, created_at as ts from b_rows order by id desc limit 5
    validator: select count(*) from b_rows where id = $1
`
)

// stormConfigs returns the two configurations of the reload tests.
func stormConfigs(env *dbtest.Env) (a, b string) {
	extra := fmt.Sprintf(`  extra: {driver: postgres, dsn: "%s", max_connections: 2}`, env.Left.DSN(dbtest.EnvDB))
	return envConfig(env, "", stormA), envConfig(env, extra, stormB)
}

// stormReloads is how many reloads TestReloadStorm asks for: the last one
// (number 71, odd and not a bad file) loads configuration b.
const stormReloads = 72

// reloadStorm rewrites the configuration file of s n times, alternating a
// and b with a bad file now and then, and asks for a reload each time. It
// fails t when a reload is not answered as it should be.
func reloadStorm(t *testing.T, s *stack, a, b string, n int, pause time.Duration) {
	t.Helper()
	for i := range n {
		cfg, want := a, http.StatusOK
		switch {
		case i%7 == 6:
			cfg, want = strings.Replace(a, "max_rows: 20", "max_rows: 20\n  max_lagg: 1m", 1),
				http.StatusInternalServerError
		case i%2 == 1:
			cfg = b
		}
		if code, body := s.rewrite(t, cfg); code != want {
			t.Errorf("reload %d: %d %q, want %d", i, code, body, want)
		}
		time.Sleep(pause)
	}
}

func TestReloadStorm(t *testing.T) {
	env := dbtest.SharedEnv(t)
	checkGoroutines(t)
	writers(t, env)
	a, b := stormConfigs(env)
	s := startStack(t, a)
	waitInSync(t, s, append(allDirections, [2]string{"flip", "left_to_right"}), 10*time.Second)
	s.waitState(t, "broken", "left_to_right", "error", detect)
	before := badCounts(t, s, allDirections)
	counts := map[[2]string]float64{}
	for _, d := range allDirections {
		counts[d] = s.checksTotal(t, d[0], d[1], "in_sync")
	}

	// Many reloads while checks run, each while the previous one may still
	// be stopping the checks it replaced. The last of them loads b.
	start := time.Now()
	reloadStorm(t, s, a, b, stormReloads, 40*time.Millisecond)
	t.Logf("%d reloads in %v", stormReloads, time.Since(start).Round(time.Millisecond))

	// The directions no reload changed kept their state and went on
	// counting; none of their checks failed.
	for _, d := range allDirections {
		if n := s.checksTotal(t, d[0], d[1], "in_sync"); n <= counts[d] {
			t.Errorf("%s %s: %v checks in sync before the reloads, %v after: it stopped counting",
				d[0], d[1], counts[d], n)
		}
	}
	checkUnaffected(t, s, before)
	st := s.direction(t, "broken", "left_to_right")
	if st.State != "error" || !strings.Contains(st.Error, "no_such_table") {
		t.Errorf("broken after the reloads: %+v, want its error", st)
	}

	// The last file was b: it runs, with every pair in it.
	s.waitState(t, "flop", "left_to_right", "in_sync", 10*time.Second)
	s.waitState(t, "flip", "left_to_right", "in_sync", 10*time.Second)
	if st := s.direction(t, "flip", "left_to_right"); st.MaxLagSeconds != 6 {
		t.Errorf("flip after the reloads: max_lag %vs, want 6s from the last file", st.MaxLagSeconds)
	}
	if v := s.reloadGauge(t); v != "1" {
		t.Errorf("spengler_config_last_reload_successful = %q after a good file, want 1", v)
	}
	// Pools replaced by the reloads were closed: Spengler holds no more
	// connections than its pools allow (4 per database, 2 for extra).
	for _, p := range []*dbtest.PG{env.Left, env.Right} {
		n, err := pgSpengler(t.Context(), p, "true")
		if err != nil || n > 2*4+2 {
			t.Errorf("%s: %d connections of Spengler's after the reloads (err %v), want at most %d",
				p.Name, n, err, 2*4+2)
		}
	}
	s.engine.Close()
	for _, p := range []*dbtest.PG{env.Primary, env.Standby, env.Left, env.Right} {
		waitPGSpengler(t, p, "true", 0, 5*time.Second)
	}
}

// scrapeClients is how many clients read the HTTP endpoints at once.
const scrapeClients = 32

// scrapeLimit bounds one answer: a scrape never waits for a database, so
// even on a busy machine each answer comes well within a scrape timeout.
const scrapeLimit = 5 * time.Second

// fetch reads path from the stack with client and checks that the answer
// is a well-formed 200; it returns what is wrong, or "".
func fetch(client *http.Client, s *stack, path, accept string) string {
	req, err := http.NewRequest(http.MethodGet, s.srv.URL+path, nil)
	if err != nil {
		return err.Error()
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Sprintf("GET %s: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if took := time.Since(start); took > scrapeLimit {
		return fmt.Sprintf("GET %s took %v", path, took)
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("GET %s: %d, %v", path, resp.StatusCode, err)
	}
	switch {
	case path == "/metrics":
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
		if err != nil {
			return fmt.Sprintf("GET /metrics: %v", err)
		}
		if _, ok := families["spengler_replication_in_sync"]; !ok {
			return "GET /metrics: no spengler_replication_in_sync"
		}
	case path == "/status" || accept == "application/json":
		var st server.Status
		if err := json.Unmarshal(body, &st); err != nil {
			return fmt.Sprintf("GET %s: %v", path, err)
		}
		names := map[string]bool{}
		for _, p := range st.Pairs {
			names[p.Name] = true
			for _, d := range p.Directions {
				if d.State == "" || d.Source == "" || d.Target == "" {
					return fmt.Sprintf("GET %s: pair %s: direction %+v", path, p.Name, d)
				}
			}
		}
		if !names["stream"] || !names["logical"] {
			return fmt.Sprintf("GET %s: pairs %v, want stream and logical", path, names)
		}
	default:
		if !strings.Contains(string(body), "</html>") {
			return fmt.Sprintf("GET %s: not a whole page", path)
		}
	}
	return ""
}

func TestManyConcurrentClients(t *testing.T) {
	env := dbtest.SharedEnv(t)
	checkGoroutines(t)
	writers(t, env)
	a, b := stormConfigs(env)
	s := startStack(t, a)
	waitInSync(t, s, allDirections, 10*time.Second)
	before := badCounts(t, s, allDirections)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: scrapeClients}}
	defer client.CloseIdleConnections()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var requests atomic.Int64
	var mu sync.Mutex
	var problems []string
	paths := []struct{ path, accept string }{
		{"/metrics", ""}, {"/status", ""}, {"/", "application/json"}, {"/", ""},
	}
	for i := range scrapeClients {
		wg.Go(func() {
			for j := i; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				p := paths[j%len(paths)]
				problem := fetch(client, s, p.path, p.accept)
				requests.Add(1)
				if problem != "" {
					mu.Lock()
					problems = append(problems, problem)
					mu.Unlock()
				}
			}
		})
	}
	// Meanwhile the checks run and the configuration changes.
	reloadStorm(t, s, a, b, 30, 100*time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("%d requests from %d clients", requests.Load(), scrapeClients)
	if len(problems) > 0 {
		t.Errorf("%d of %d answers were wrong, the first: %s", len(problems), requests.Load(),
			strings.Join(problems[:min(len(problems), 5)], "\n"))
	}
	checkUnaffected(t, s, before)
	if requests.Load() < scrapeClients {
		t.Errorf("only %d requests answered", requests.Load())
	}
	s.engine.Close()
	_ = os.Remove(s.file)
}
