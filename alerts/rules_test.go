package alerts_test

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Paths, relative to this package, of the files under test.
const (
	rulesPath     = "spengler.rules.yml"
	ruleTestsPath = "spengler.rules.test.yml"
	runbookPath   = "../docs/runbook.md"
	dashboardPath = "../dashboards/spengler.json"
)

// runbookURL is where every alert's runbook_url points, before the anchor.
const runbookURL = "https://github.com/spengler-dev/spengler/blob/main/docs/runbook.md#"

// rulesFile is the part of a Prometheus rule file the tests read. Decoding
// is strict, so a misspelt key fails the test.
type rulesFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// decodeStrict decodes the YAML file at path into v, rejecting unknown keys.
func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
}

// loadRules returns the rules of the rule file, in order, and the names they
// record.
func loadRules(t *testing.T) (rules []rule, recorded map[string]bool) {
	t.Helper()
	var f rulesFile
	decodeStrict(t, rulesPath, &f)
	recorded = map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			rules = append(rules, r)
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no rules", rulesPath)
	}
	return rules, recorded
}

func TestRulesUseExportedMetrics(t *testing.T) {
	rules, recorded := loadRules(t)
	c := newPromQLChecker(exporterMetrics(t), recorded)
	for _, r := range rules {
		for _, err := range c.check(r.Expr) {
			t.Errorf("rule %s%s: %v", r.Alert, r.Record, err)
		}
	}
}

// recordingName is the level:metric:operations form of a recorded name.
var recordingName = regexp.MustCompile(`^[a-z_]+:[a-z_]+:[a-z_]+$`)

func TestRecordingRulesNamedAndOrdered(t *testing.T) {
	rules, _ := loadRules(t)
	seen := map[string]bool{}
	for _, r := range rules {
		// A recorded name used before its rule would read the previous
		// evaluation's value.
		for name := range recordedNamesIn(r.Expr) {
			if !seen[name] {
				t.Errorf("rule %s%s uses %s before it is recorded", r.Alert, r.Record, name)
			}
		}
		if r.Record == "" {
			continue
		}
		if !recordingName.MatchString(r.Record) {
			t.Errorf("recording rule %s: want a level:metric:operations name", r.Record)
		}
		if r.Alert != "" || r.For != "" || len(r.Annotations) > 0 {
			t.Errorf("recording rule %s has alerting fields", r.Record)
		}
		seen[r.Record] = true
	}
}

// recordedName matches a metric name with a colon: a recorded one.
var recordedName = regexp.MustCompile(`[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]*`)

// recordedNamesIn returns the names with a colon that expr mentions.
func recordedNamesIn(expr string) map[string]bool {
	out := map[string]bool{}
	for _, m := range recordedName.FindAllString(expr, -1) {
		out[m] = true
	}
	return out
}

// directionLabels are the labels of every per-direction series.
var directionLabels = []string{"pair", "direction", "source", "target"}

func TestAlertsComplete(t *testing.T) {
	rules, _ := loadRules(t)
	ex := exporterMetrics(t)
	anchors := runbookAnchors(t)
	names := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		t.Run(r.Alert, func(t *testing.T) {
			if names[r.Alert] {
				t.Errorf("alert name used twice")
			}
			names[r.Alert] = true
			if !strings.HasPrefix(r.Alert, "Spengler") {
				t.Errorf("name does not start with Spengler")
			}
			if d, err := time.ParseDuration(r.For); err != nil || d <= 0 {
				t.Errorf("for: %q, want a positive duration", r.For)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("labels.severity %q, want critical or warning", s)
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("annotation %s missing", k)
				}
			}
			url := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, runbookURL)
			if !ok || !anchors[anchor] {
				t.Errorf("runbook_url %q: want %s<anchor of a heading in %s>",
					url, runbookURL, runbookPath)
			}
			if anchor != strings.ToLower(r.Alert) {
				t.Errorf("runbook_url anchor %q, want the alert's own section %q",
					anchor, strings.ToLower(r.Alert))
			}
			// An alert on per-direction series must say which pair, direction,
			// source and target it is about.
			if perDirection(r.Expr, rules, ex) {
				text := r.Annotations["summary"] + " " + r.Annotations["description"]
				for _, l := range directionLabels {
					if !strings.Contains(text, "$labels."+l) {
						t.Errorf("summary and description do not name the %s ($labels.%s)", l, l)
					}
				}
			}
		})
	}
	if len(names) < 8 {
		t.Errorf("only %d alerts", len(names))
	}
}

// perDirection reports whether expr selects per-direction series, directly or
// through a recording rule.
func perDirection(expr string, rules []rule, ex *exported) bool {
	for _, m := range regexp.MustCompile(`spengler_[a-z_]+`).FindAllString(expr, -1) {
		if ex.labels[m]["direction"] {
			return true
		}
	}
	for name := range recordedNamesIn(expr) {
		for _, r := range rules {
			if r.Record == name && perDirection(r.Expr, rules, ex) {
				return true
			}
		}
	}
	return false
}

// ruleTests is the part of a promtool test file the tests read.
type ruleTests struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	Tests              []struct {
		Name          string `yaml:"name"`
		Interval      string `yaml:"interval"`
		InputSeries   []any  `yaml:"input_series"`
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLExprTest []any `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

// TestEveryAlertUnitTested checks that the promtool tests cover every alert
// both ways: a time where it fires, with every label and annotation given
// exactly, and a time where it does not.
func TestEveryAlertUnitTested(t *testing.T) {
	rules, _ := loadRules(t)
	var f ruleTests
	decodeStrict(t, ruleTestsPath, &f)
	if !slices.Contains(f.RuleFiles, rulesPath) {
		t.Errorf("%s does not load %s", ruleTestsPath, rulesPath)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) == 0 {
				silent[a.Alertname] = true
			}
			for _, e := range a.ExpAlerts {
				fires[a.Alertname] = true
				for _, k := range []string{"summary", "description", "runbook_url"} {
					if e.ExpAnnotations[k] == "" {
						t.Errorf("test %q, %s at %s: no expected %s",
							tc.Name, a.Alertname, a.EvalTime, k)
					}
				}
				if e.ExpLabels["severity"] == "" {
					t.Errorf("test %q, %s at %s: no expected severity",
						tc.Name, a.Alertname, a.EvalTime)
				}
			}
		}
	}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		if !fires[r.Alert] {
			t.Errorf("%s: no promtool test where it fires", r.Alert)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no promtool test where it stays silent", r.Alert)
		}
	}
}

// runbookAnchors returns the anchors GitHub gives the headings of the runbook.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(runbookPath)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	fenced := false
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		anchors[githubAnchor(title)] = true
	}
	return anchors
}

// githubAnchor returns the anchor GitHub makes of a heading: lower case,
// punctuation other than hyphens and underscores dropped, spaces as hyphens.
// (Headings that occur twice get a suffix; the runbook has none.)
func githubAnchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestRunbookLinksResolve(t *testing.T) {
	data, err := os.ReadFile(runbookPath)
	if err != nil {
		t.Fatal(err)
	}
	anchors := runbookAnchors(t)
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(string(data), -1) {
		if !anchors[m[1]] {
			t.Errorf("link to #%s: no such heading", m[1])
		}
	}
	if _, err := os.Stat("../alerts/" + rulesPath); err != nil {
		t.Errorf("the runbook links to ../alerts/%s: %v", rulesPath, err)
	}
}

func TestGithubAnchor(t *testing.T) {
	for _, tc := range []struct{ title, want string }{
		{"SpenglerReplicationOutOfSync", "spenglerreplicationoutofsync"},
		{"First look, for every alert", "first-look-for-every-alert"},
		{"MySQL and MariaDB replication", "mysql-and-mariadb-replication"},
		{"Fixing replication, by engine", "fixing-replication-by-engine"},
	} {
		if got := githubAnchor(tc.title); got != tc.want {
			t.Errorf("githubAnchor(%q) = %q, want %q", tc.title, got, tc.want)
		}
	}
}
