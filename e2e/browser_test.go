package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// chromiumPackages are the Debian packages that provide the browser.
const chromiumPackages = "chromium chromium-driver"

// screenshotDirEnv names the environment variable of a directory to copy the
// status page's screenshot to.
const screenshotDirEnv = "SPENGLER_SCREENSHOT_DIR"

// findChromium returns the path of a Chromium binary. Without one it skips
// the test, or fails it when SPENGLER_REQUIRE_DB=1.
func findChromium(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && fi.Mode()&0o111 != 0 {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "chromium not found: install the Debian packages " + chromiumPackages +
		" (scripts/provision.sh chromium)"
	if dbtest.RequireDB() {
		t.Fatal(msg + "; SPENGLER_REQUIRE_DB=1, so this fails")
	}
	t.Skip(msg)
	return ""
}

// newBrowser starts a headless Chromium with a profile of its own and
// returns a context of one tab in it. The browser stops when the test ends.
func newBrowser(t *testing.T, execPath string) context.Context {
	t.Helper()
	output := &syncBuffer{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests may run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
		chromedp.CombinedOutput(output),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", output.String())
		}
	})
	// The first run starts the browser; it must not carry a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// renderedRow is a row of the status page as the browser shows it.
type renderedRow struct {
	Pair       string `json:"pair"`
	Direction  string `json:"direction"`
	State      string `json:"state"`
	StateText  string `json:"stateText"`
	Background string `json:"background"`
	Lag        string `json:"lag"`
	LastCheck  string `json:"lastCheck"`
	Why        string `json:"why"`
}

// readRows is the script that reads the table of the status page: what each
// row says, as rendered, and the colour of its state badge.
const readRows = `Array.from(document.querySelectorAll("tr[data-pair]")).map(tr => {
	const cell = c => tr.querySelector("td." + c);
	const badge = cell("state").querySelector(".badge");
	return {
		pair: tr.dataset.pair,
		direction: tr.dataset.direction,
		state: tr.dataset.state,
		stateText: cell("state").innerText.trim(),
		background: getComputedStyle(badge).backgroundColor,
		lag: cell("lag").innerText.trim(),
		lastCheck: cell("last-check").innerText.trim(),
		why: cell("why").innerText.trim(),
	};
})`

// pageSummary is what the top of the status page says.
type pageSummary struct {
	Title     string            `json:"title"`
	Verdict   string            `json:"verdict"`
	Counts    map[string]string `json:"counts"`
	Resources int               `json:"resources"`
}

const readSummary = `({
	title: document.title,
	verdict: document.getElementById("verdict").innerText.trim(),
	counts: Object.fromEntries(Array.from(document.querySelectorAll("[data-count]"))
		.map(li => [li.dataset.count, li.querySelector("b").innerText.trim()])),
	resources: performance.getEntriesByType("resource").length,
})`

func TestStatusPageInBrowser(t *testing.T) {
	execPath := findChromium(t)
	env := dbtest.SharedEnv(t)
	writers(t, env)
	s := startStack(t, envConfig(env, "", ""))
	for _, d := range allDirections {
		s.waitState(t, d[0], d[1], "in_sync", 10*time.Second)
	}
	browser := newBrowser(t, execPath)

	if err := env.Logical.BreakAToB(t.Context()); err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			env.Logical.HealAToB(context.Background())
		}
	}()

	// Load the page until it shows the broken direction out of sync, as a
	// person reloading it would.
	var rows []renderedRow
	deadline := time.Now().Add(detect + 5*time.Second)
	for {
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		err := chromedp.Do(ctx, chromedp.Navigate(s.srv.URL+"/"))
		if err == nil {
			rows, err = chromedp.Run(ctx, chromedp.Evaluate[[]renderedRow](readRows))
		}
		cancel()
		if err != nil {
			t.Fatalf("load the status page: %v", err)
		}
		if state(rows, "logical", "left_to_right") == "out_of_sync" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed logical left_to_right out of sync: %+v", rows)
		}
		time.Sleep(300 * time.Millisecond)
	}

	byKey := map[[2]string]renderedRow{}
	for _, r := range rows {
		byKey[[2]string{r.Pair, r.Direction}] = r
	}
	if len(rows) != len(allDirections) {
		t.Errorf("page shows %d rows, want %d: %+v", len(rows), len(allDirections), rows)
	}
	broken := byKey[[2]string{"logical", "left_to_right"}]
	if broken.StateText != "out of sync" || !strings.Contains(broken.Why, "not on the target") ||
		broken.Lag == "" || !strings.HasSuffix(broken.LastCheck, "every 1.0s") {
		t.Errorf("broken direction shows %+v, want out of sync, with a reason", broken)
	}
	for _, d := range [][2]string{{"logical", "right_to_left"}, {"stream", "left_to_right"}} {
		r, ok := byKey[d]
		if !ok || r.StateText != "in sync" || r.Why != "" {
			t.Errorf("%s %s shows %+v, want in sync", d[0], d[1], r)
		}
		if r.Background == broken.Background {
			t.Errorf("in sync and out of sync badges share the colour %s", r.Background)
		}
	}
	if !reddish(broken.Background) {
		t.Errorf("out of sync badge colour %s, want a red", broken.Background)
	}

	ctx, cancel := context.WithTimeout(browser, 30*time.Second)
	defer cancel()
	summary, err := chromedp.Run(ctx, chromedp.Evaluate[pageSummary](readSummary))
	if err != nil {
		t.Fatal(err)
	}
	if summary.Title != "1 not in sync · Spengler" ||
		summary.Verdict != "1 of 3 directions not in sync" ||
		summary.Counts["out_of_sync"] != "1" || summary.Counts["in_sync"] != "2" ||
		summary.Counts["pairs"] != "2" {
		t.Errorf("page summary %+v, want 1 of 3 out of sync", summary)
	}
	if summary.Resources != 0 {
		t.Errorf("the page loaded %d resources, want none: it must work offline", summary.Resources)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 300 {
		t.Errorf("screenshot is %v, want a full page", b)
	}
	path := filepath.Join(t.TempDir(), "status-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes, %v)", path, len(shot), img.Bounds().Size())
	if dir := os.Getenv(screenshotDirEnv); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		kept := filepath.Join(dir, "status-page.png")
		if err := os.WriteFile(kept, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot copied to %s", kept)
	}

	if err := env.Logical.HealAToB(t.Context()); err != nil {
		t.Fatal(err)
	}
	healed = true
	s.waitState(t, "logical", "left_to_right", "in_sync", detect+5*time.Second)
}

// state returns the state a row of the page shows for a direction.
func state(rows []renderedRow, pair, dir string) string {
	for _, r := range rows {
		if r.Pair == pair && r.Direction == dir {
			return r.State
		}
	}
	return ""
}

// reddish reports whether a CSS rgb() colour is mostly red.
func reddish(css string) bool {
	var r, g, b int
	if _, err := fmt.Sscanf(css, "rgb(%d, %d, %d)", &r, &g, &b); err != nil {
		return false
	}
	return r > g+20 && r > b+20
}
