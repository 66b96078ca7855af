package alerts_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	Datasource *datasource     `json:"datasource"`
}

// queryText returns a variable's query: a plain string, or the query field
// of the object newer Grafana versions write.
func (v variable) queryText(t *testing.T) string {
	t.Helper()
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
	}
	return o.Query
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("decode %s: %v", dashboardPath, err)
	}
	return &d
}

// allPanels returns the panels of d, with those inside rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// builtinIntervals are Grafana's interval variables, with a stand-in value.
var builtinIntervals = strings.NewReplacer(
	"${__rate_interval}", "5m", "$__rate_interval", "5m",
	"${__interval}", "1m", "$__interval", "1m",
	"${__range}", "1h", "$__range", "1h",
)

// variableRef matches a reference to a dashboard variable.
var variableRef = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)

func TestDashboardSettings(t *testing.T) {
	d := loadDashboard(t)
	if d.UID != "spengler" || d.Title != "Spengler" {
		t.Errorf("uid %q, title %q; want spengler, Spengler", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want 36 or later (datasource uids)", d.SchemaVersion)
	}
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || v.queryText(t) != "prometheus" {
		t.Errorf("variable datasource: type %q, query %q; want datasource, prometheus",
			v.Type, v.queryText(t))
	}
	for _, name := range []string{"pair", "direction"} {
		v, ok := vars[name]
		if !ok || v.Type != "query" || !v.Multi || !v.IncludeAll {
			t.Errorf("variable %s: %+v, want a multi-value query variable with All", name, v)
		}
	}
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the datasource variable",
				p.Title, p.Datasource)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s: datasource %+v, want the datasource variable",
					p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
}

func TestDashboardUsesExportedMetrics(t *testing.T) {
	d := loadDashboard(t)
	_, recorded := loadRules(t)
	c := newPromQLChecker(exporterMetrics(t), recorded)
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	checkVars := func(where, q string) {
		for _, m := range variableRef.FindAllStringSubmatch(q, -1) {
			if !strings.HasPrefix(m[1], "__") && !vars[m[1]] {
				t.Errorf("%s: unknown variable $%s", where, m[1])
			}
		}
	}

	n := 0
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			where := "panel " + p.Title + " query " + tg.RefID
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: empty expr", where)
				continue
			}
			checkVars(where, tg.Expr)
			for _, err := range c.check(builtinIntervals.Replace(tg.Expr)) {
				t.Errorf("%s: %v", where, err)
			}
			n++
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.queryText(t)
		if v.Definition != "" && v.Definition != q {
			t.Errorf("variable %s: definition %q differs from query %q", v.Name, v.Definition, q)
		}
		checkVars("variable "+v.Name, q)
		if strings.HasPrefix(strings.TrimSpace(q), "label_values(") {
			for _, err := range c.checkLabelValues(q) {
				t.Errorf("variable %s: %v", v.Name, err)
			}
			continue
		}
		for _, err := range c.check(builtinIntervals.Replace(q)) {
			t.Errorf("variable %s: %v", v.Name, err)
		}
	}
	if n < 8 {
		t.Errorf("only %d panel queries", n)
	}
}
