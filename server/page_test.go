package server

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/html"
)

// pageRow is what one row of the status page's table says.
type pageRow struct {
	Pair, Direction, State, StateText, Why string
}

// parsePage parses the status page and returns its document.
func parsePage(t *testing.T, body string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse page: %v", err)
	}
	return doc
}

// findAll returns the elements under n for which match is true, in order.
func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for c := range n.Descendants() {
		if c.Type == html.ElementNode && match(c) {
			out = append(out, c)
		}
	}
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return n.Type == html.ElementNode && strings.Contains(" "+attr(n, "class")+" ", " "+class+" ")
}

// text returns the text under n with runs of white space made one space.
func text(n *html.Node) string {
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
			b.WriteByte(' ')
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

func pageRows(doc *html.Node) []pageRow {
	var rows []pageRow
	for _, tr := range findAll(doc, func(n *html.Node) bool {
		return n.Data == "tr" && attr(n, "data-pair") != ""
	}) {
		r := pageRow{Pair: attr(tr, "data-pair"), Direction: attr(tr, "data-direction"),
			State: attr(tr, "data-state")}
		for _, td := range findAll(tr, func(n *html.Node) bool { return n.Data == "td" }) {
			switch {
			case hasClass(td, "state"):
				r.StateText = text(td)
			case hasClass(td, "why"):
				r.Why = text(td)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func TestPageRows(t *testing.T) {
	f := loaded(t)
	_, body := f.get("/")
	doc := parsePage(t, body)

	want := []pageRow{
		{"failing", "left_to_right", "error", "error", `target "broken": ` + htmlError},
		{"orders", "left_to_right", "in_sync", "in sync", ""},
		{"orders", "right_to_left", "in_sync", "in sync", ""},
		{"quiet", "left_to_right", "out_of_sync", "out of sync",
			"selector returned no rows: nothing to prove"},
	}
	if diff := cmp.Diff(want, pageRows(doc)); diff != "" {
		t.Errorf("page rows (-want +got):\n%s", diff)
	}

	counts := map[string]string{}
	for _, li := range findAll(doc, func(n *html.Node) bool { return attr(n, "data-count") != "" }) {
		counts[attr(li, "data-count")] = text(li)
	}
	wantCounts := map[string]string{
		"in_sync": "2 in sync", "out_of_sync": "1 out of sync", "error": "1 error",
		"unknown": "0 not checked yet", "pairs": "3 pairs",
	}
	if diff := cmp.Diff(wantCounts, counts); diff != "" {
		t.Errorf("summary counts (-want +got):\n%s", diff)
	}
	verdict := findAll(doc, func(n *html.Node) bool { return attr(n, "id") == "verdict" })
	if len(verdict) != 1 || text(verdict[0]) != "2 of 4 directions not in sync" ||
		!hasClass(verdict[0], "bad") {
		t.Errorf("verdict %v, want one saying 2 of 4 are not in sync", verdict)
	}
	title := findAll(doc, func(n *html.Node) bool { return n.Data == "title" })
	if len(title) != 1 || text(title[0]) != "2 not in sync · Spengler" {
		t.Errorf("title %q, want it to count the directions not in sync", text(title[0]))
	}
	for _, want := range []string{`content="10"`, "1.2.3-test", `href="status"`, `href="metrics"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

func TestPageStates(t *testing.T) {
	cases := []struct {
		name, cfg, verdict, title string
	}{
		{"nothing loaded", "", "No pairs configured", "no pairs · Spengler"},
		{"all in sync", `
global: {interval: 1h, max_lag: 2h}
databases:
  east: {driver: postgres, dsn: "postgres://mon@east.invalid/app"}
  west: {driver: postgres, dsn: "postgres://mon@west.invalid/app"}
pairs:
  - {name: orders, left: east, right: west, selector: "select id from t", validator: "select count(*) from t where id = $1"}
`, "All 2 directions in sync", "all in sync · Spengler"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg)
			if tc.cfg != "" {
				if err := f.reloader.Reload(); err != nil {
					t.Fatal(err)
				}
				f.engine.CheckAll(t.Context())
			}
			_, body := f.get("/")
			doc := parsePage(t, body)
			v := findAll(doc, func(n *html.Node) bool { return attr(n, "id") == "verdict" })
			title := findAll(doc, func(n *html.Node) bool { return n.Data == "title" })
			if len(v) != 1 || text(v[0]) != tc.verdict || text(title[0]) != tc.title {
				t.Errorf("verdict %q, title %q; want %q, %q", text(v[0]), text(title[0]),
					tc.verdict, tc.title)
			}
		})
	}
}

func TestPageNotCheckedYet(t *testing.T) {
	f := newFixture(t, testConfig)
	if err := f.reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	_, body := f.get("/")
	doc := parsePage(t, body)
	for _, r := range pageRows(doc) {
		if r.State != StateUnknown || r.StateText != "not checked yet" {
			t.Errorf("%s %s before its first check: %+v", r.Pair, r.Direction, r)
		}
	}
	if !strings.Contains(body, "never") {
		t.Errorf("page of unchecked directions does not say they were never checked")
	}
}

// TestPageEscapes makes sure text from databases, error messages and the
// configuration file reaches the page as text, never as markup.
func TestPageEscapes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `"><img src=x onerror=alert(2)>`)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := loaded(t)
	// A reload error quoting a bad value, about a file whose name is markup.
	bad := filepath.Join(dir, "spengler.yml")
	if err := os.WriteFile(bad, []byte(strings.Replace(testConfig, "name: quiet",
		`name: "<b onmouseover=alert(3)>quiet</b>"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	f.reloader.path = bad
	if resp, _ := f.do("POST", "/-/reload"); resp.StatusCode != 500 {
		t.Fatalf("reload of a bad file: %d, want 500", resp.StatusCode)
	}
	st := f.status()
	if !strings.Contains(st.Config.LastReloadError, "<b onmouseover") {
		t.Fatalf("reload error %q does not quote the bad name: the test proves nothing",
			st.Config.LastReloadError)
	}

	_, body := f.get("/")
	for _, markup := range []string{"<script", "<img", "<b "} {
		if strings.Contains(body, markup) {
			t.Errorf("page holds %q from data: not escaped", markup)
		}
	}
	doc := parsePage(t, body)
	for _, n := range findAll(doc, func(n *html.Node) bool {
		return n.Data == "script" || n.Data == "img" || (n.Data == "b" && len(n.Attr) > 0) ||
			attr(n, "onerror") != "" || attr(n, "onmouseover") != ""
	}) {
		t.Errorf("page has an element from data: <%s %v>", n.Data, n.Attr)
	}
	// The text is still there for people to read.
	alert := findAll(doc, func(n *html.Node) bool { return attr(n, "id") == "reload-error" })
	if len(alert) != 1 || !strings.Contains(text(alert[0]), `"<b onmouseover=alert(3)>quiet</b>"`) {
		t.Errorf("reload error not shown as text: %v", alert)
	}
	rows := pageRows(doc)
	if len(rows) == 0 || !strings.Contains(rows[0].Why, "<script>alert('owned')</script>") {
		t.Errorf("check error not shown as text: %+v", rows)
	}
}

// TestPageSelfContained makes sure the page loads nothing from elsewhere, so
// that it works where the exporter has no way out.
func TestPageSelfContained(t *testing.T) {
	f := loaded(t)
	_, body := f.get("/")
	external := regexp.MustCompile(`(?i)(<script|<link|<img|<iframe|@import|url\(|src=|https?://)`)
	if m := external.FindString(body); m != "" {
		t.Errorf("page refers to something external: %q", m)
	}
}

func TestPageMarksLagOverMaxLag(t *testing.T) {
	st := &Status{Pairs: []PairStatus{{Name: "p", Directions: []DirectionStatus{
		{Direction: "left_to_right", State: "out_of_sync", LagSeconds: 200, MaxLagSeconds: 120},
		{Direction: "right_to_left", State: "in_sync", LagSeconds: 1, MaxLagSeconds: 120},
	}}}}
	var b strings.Builder
	if err := pageTmpl.Execute(&b, newPageData(st, "", "/metrics")); err != nil {
		t.Fatal(err)
	}
	doc := parsePage(t, b.String())
	over := findAll(doc, func(n *html.Node) bool { return hasClass(n, "over") })
	if len(over) != 1 || text(over[0]) != "3m20s" {
		t.Errorf("lag marked over max_lag: %v, want only the 3m20s one", over)
	}
}

func TestSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0, "0ms"}, {0.85, "850ms"}, {4.25, "4.2s"}, {59.9, "59.9s"}, {200, "3m20s"},
		{3600, "1h00m"}, {7500, "2h05m"}, {3*86400 + 4*3600, "3d04h"},
	} {
		if got := seconds(tc.in); got != tc.want {
			t.Errorf("seconds(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	past := now.Add(-90 * time.Second)
	if got := ago(now, &past); got != "1m30s ago" {
		t.Errorf("ago = %q, want 1m30s ago", got)
	}
	if got := ago(now, nil); got != "never" {
		t.Errorf("ago(nil) = %q, want never", got)
	}
}
