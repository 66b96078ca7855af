package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// promRulesFile is the repository's rule file, relative to this package.
const promRulesFile = "../alerts/spengler.rules.yml"

// outOfSyncAlert is the alert the test expects for a broken direction.
const outOfSyncAlert = "SpenglerReplicationOutOfSync"

// promServer is a Prometheus server started by a test.
type promServer struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
	logs *syncBuffer
}

// lookPrometheus returns the path of the prometheus binary. When it is
// missing it skips t, or fails it when SPENGLER_REQUIRE_DB=1.
func lookPrometheus(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("prometheus")
	if err == nil {
		return path
	}
	msg := "prometheus not found: install the Debian package prometheus " +
		"(apt-get install prometheus, or scripts/provision.sh prometheus)"
	if dbtest.RequireDB() {
		t.Fatal(msg + "; SPENGLER_REQUIRE_DB=1, so this fails")
	}
	t.Skip(msg + "; skipping (SPENGLER_REQUIRE_DB=1 makes this fail)")
	return ""
}

// startPrometheus runs Prometheus with the repository's rules, scraping
// target (a URL) every second as job "spengler", until the test ends.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs(promRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	port, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: spengler
    static_configs:
      - targets: [%q]
`, rules, u.Host)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := &promServer{url: "http://" + addr, done: make(chan struct{}), logs: &syncBuffer{}}
	p.cmd = exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
	)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := dbtest.StartProcess(p.cmd); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.logs.String())
		}
	})

	p.waitFor(t, 30*time.Second, "Prometheus ready", func() (bool, string) {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// stop sends Prometheus SIGTERM and waits for it to exit; if it has not
// exited after 10 seconds, it kills it and waits again.
func (p *promServer) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	err := p.cmd.Process.Signal(syscall.SIGTERM)
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("stop prometheus: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("prometheus did not exit within 10s of SIGTERM; killing it")
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFor polls cond every 200ms until it holds, and fails t with cond's last
// explanation when it does not within limit or when Prometheus exits.
func (p *promServer) waitFor(t *testing.T, limit time.Duration, what string,
	cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		select {
		case <-p.done:
			t.Fatalf("%s: prometheus exited: %v", what, p.err)
		default:
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v: %s", what, limit, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// api gets path from Prometheus's HTTP API and decodes its data into v.
func (p *promServer) api(path string, v any) error {
	resp, err := http.Get(p.url + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("GET %s: status %s: %w: %s", path, resp.Status, err, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: status %s: %s", path, resp.Status, env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

// promAlert is one alert of /api/v1/alerts.
type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

// alerts returns the pending and firing alerts named name for pair, or for
// every pair when pair is empty.
func (p *promServer) alerts(name, pair string) ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	if err := p.api("/api/v1/alerts", &data); err != nil {
		return nil, err
	}
	var out []promAlert
	for _, a := range data.Alerts {
		if a.Labels["alertname"] == name && (pair == "" || a.Labels["pair"] == pair) &&
			(a.State == "pending" || a.State == "firing") {
			out = append(out, a)
		}
	}
	return out, nil
}

// query runs an instant query and returns each series' labels and value.
func (p *promServer) query(q string) ([]map[string]string, error) {
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.api("/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		return nil, err
	}
	var out []map[string]string
	for _, r := range data.Result {
		m := map[string]string{"__value__": fmt.Sprint(r.Value[1])}
		for k, v := range r.Metric {
			m[k] = v
		}
		out = append(out, m)
	}
	return out, nil
}

// rulesHealth returns every rule whose last evaluation was not "ok", with
// its error, and how many rules Prometheus has loaded.
func (p *promServer) rulesHealth() (bad []string, n int, err error) {
	var data struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("/api/v1/rules", &data); err != nil {
		return nil, 0, err
	}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				bad = append(bad, fmt.Sprintf("%s: %s %s", r.Name, r.Health, r.LastError))
			}
		}
	}
	return bad, n, nil
}

// directionsOf lists the direction labels of alerts.
func directionsOf(alerts []promAlert) []string {
	var out []string
	for _, a := range alerts {
		out = append(out, a.Labels["pair"]+"/"+a.Labels["direction"]+"("+a.State+")")
	}
	slices.Sort(out)
	return out
}

// TestPrometheusAlertsOnBrokenDirection runs the shipped rules in a real
// Prometheus that scrapes a Spengler watching the logical pair, breaks the
// pair's left-to-right direction, and checks that the out-of-sync alert
// becomes active for exactly that direction and clears after healing.
func TestPrometheusAlertsOnBrokenDirection(t *testing.T) {
	bin := lookPrometheus(t)
	env := dbtest.SharedEnv(t)
	writers(t, env)
	s := startStack(t, envConfig(env, "", ""))
	for _, d := range allDirections {
		s.waitState(t, d[0], d[1], "in_sync", 10*time.Second)
	}
	prom := startPrometheus(t, bin, s.srv.URL)

	// Prometheus sees both directions of the pair in sync, and no alert.
	prom.waitFor(t, 20*time.Second, "both directions scraped in sync", func() (bool, string) {
		series, err := prom.query(
			`spengler_replication_in_sync{job="spengler",pair="logical"} == 1`)
		if err != nil {
			return false, err.Error()
		}
		return len(series) == 2, fmt.Sprintf("in-sync series %v", series)
	})
	if active, err := prom.alerts(outOfSyncAlert, ""); err != nil || len(active) > 0 {
		t.Fatalf("before breaking: %s alerts %v, err %v; want none", outOfSyncAlert, active, err)
	}

	ctx := t.Context()
	if err := env.Logical.BreakAToB(ctx); err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			env.Logical.HealAToB(context.Background())
		}
	}()

	var got promAlert
	took := prom.waitFor(t, detect+15*time.Second, outOfSyncAlert+" active for left_to_right",
		func() (bool, string) {
			active, err := prom.alerts(outOfSyncAlert, "")
			if err != nil {
				return false, err.Error()
			}
			for _, a := range active {
				if a.Labels["pair"] != "logical" || a.Labels["direction"] != "left_to_right" {
					t.Fatalf("%s active for %v, want pair logical, left_to_right only: %+v",
						outOfSyncAlert, directionsOf(active), a)
				}
				got = a
			}
			return len(active) == 1, fmt.Sprintf("active: %v", directionsOf(active))
		})
	t.Logf("%s %s %v after breaking", outOfSyncAlert, got.State, took.Round(time.Millisecond))

	want := map[string]string{
		"alertname": outOfSyncAlert, "severity": "critical", "job": "spengler",
		"pair": "logical", "direction": "left_to_right", "source": "left", "target": "right",
	}
	for k, v := range want {
		if got.Labels[k] != v {
			t.Errorf("alert label %s = %q, want %q (labels %v)", k, got.Labels[k], v, got.Labels)
		}
	}
	if d := got.Annotations["description"]; !strings.Contains(d,
		"Rows written on left have not reached right (pair logical, direction left_to_right)") {
		t.Errorf("description %q does not name the direction in words", d)
	}
	u := got.Annotations["runbook_url"]
	if !strings.HasSuffix(u, "docs/runbook.md#spenglerreplicationoutofsync") {
		t.Errorf("runbook_url %q", u)
	}

	if err := env.Logical.HealAToB(ctx); err != nil {
		t.Fatal(err)
	}
	healed = true
	took = prom.waitFor(t, detect+15*time.Second, outOfSyncAlert+" cleared", func() (bool, string) {
		active, err := prom.alerts(outOfSyncAlert, "")
		if err != nil {
			return false, err.Error()
		}
		return len(active) == 0, fmt.Sprintf("active: %v", directionsOf(active))
	})
	t.Logf("%s cleared %v after healing", outOfSyncAlert, took.Round(time.Millisecond))

	bad, n, err := prom.rulesHealth()
	if err != nil || len(bad) > 0 || n == 0 {
		t.Errorf("rules: %d loaded, unhealthy %v, err %v", n, bad, err)
	}
}
