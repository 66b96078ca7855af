package alerts_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = map[string]bool{"job": true, "instance": true}

// otherMetrics are the metrics the rules and dashboard may use besides
// Spengler's own and the recorded ones: Prometheus's scrape health.
var otherMetrics = map[string]bool{"up": true}

// promqlChecker checks PromQL expressions against what the exporter exports
// and what the rules record.
type promqlChecker struct {
	ex       *exported
	recorded map[string]bool
	parser   parser.Parser
}

func newPromQLChecker(ex *exported, recorded map[string]bool) *promqlChecker {
	return &promqlChecker{ex: ex, recorded: recorded, parser: parser.NewParser(parser.Options{})}
}

// check parses expr and returns what is wrong with it: a syntax error, a
// metric that nobody exports or records, a label that a Spengler metric does
// not have, or a grouping label that none of the aggregated metrics has.
func (c *promqlChecker) check(expr string) []error {
	e, err := c.parser.ParseExpr(expr)
	if err != nil {
		return []error{fmt.Errorf("parse %q: %w", expr, err)}
	}
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			errs = append(errs, c.checkSelector(selectorName(n), n.LabelMatchers)...)
		case *parser.AggregateExpr:
			if !n.Without {
				errs = append(errs, c.checkLabelsKnown("by", n.Grouping, n.Expr)...)
			}
		case *parser.BinaryExpr:
			if m := n.VectorMatching; m != nil && m.On {
				errs = append(errs, c.checkLabelsKnown("on", m.MatchingLabels, n)...)
			}
		}
		return nil
	})
	return errs
}

// checkSelector checks one metric selector.
func (c *promqlChecker) checkSelector(name string, matchers []*labels.Matcher) []error {
	switch {
	case name == "":
		return []error{fmt.Errorf("a selector without a metric name: %v", matchers)}
	case strings.Contains(name, ":"):
		if !c.recorded[name] {
			return []error{fmt.Errorf("%s is not recorded by the rules", name)}
		}
		return nil
	case otherMetrics[name]:
		return nil
	case !strings.HasPrefix(name, "spengler_"):
		return []error{fmt.Errorf("%s is neither Spengler's nor recorded by the rules", name)}
	case !c.ex.names[name]:
		return []error{fmt.Errorf("%s is not exported by Spengler", name)}
	}
	known, ok := c.ex.labels[name]
	if !ok {
		return nil // described but not emitted in the sample: labels unknown
	}
	var errs []error
	for _, m := range matchers {
		if m.Name != labels.MetricName && !targetLabels[m.Name] && !known[m.Name] {
			errs = append(errs, fmt.Errorf("%s has no label %q", name, m.Name))
		}
	}
	return errs
}

// checkLabelsKnown checks that every label of ls is a target label or a label
// of at least one Spengler metric used in n. Recorded metrics keep the labels
// of what they record, so they are not checked.
func (c *promqlChecker) checkLabelsKnown(clause string, ls []string, n parser.Node) []error {
	var metrics []string
	parser.Inspect(n, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			metrics = append(metrics, selectorName(vs))
		}
		return nil
	})
	var errs []error
	for _, l := range ls {
		if targetLabels[l] || slices.ContainsFunc(metrics, func(m string) bool {
			_, known := c.ex.labels[m]
			return !known || c.ex.labels[m][l]
		}) {
			continue
		}
		errs = append(errs, fmt.Errorf("%s (%s): none of %v has it", clause, l, metrics))
	}
	return errs
}

// selectorName returns the metric name a selector selects, from its name or
// an equality matcher on __name__.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// labelValuesCall matches Grafana's label_values(selector, label) query.
var labelValuesCall = regexp.MustCompile(
	`^\s*label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// checkLabelValues checks a label_values(selector, label) variable query.
func (c *promqlChecker) checkLabelValues(query string) []error {
	m := labelValuesCall.FindStringSubmatch(query)
	if m == nil {
		return []error{fmt.Errorf("%q is not label_values(selector, label)", query)}
	}
	matchers, err := c.parser.ParseMetricSelector(m[1])
	if err != nil {
		return []error{fmt.Errorf("parse selector of %q: %w", query, err)}
	}
	name := ""
	for _, mt := range matchers {
		if mt.Name == labels.MetricName && mt.Type == labels.MatchEqual {
			name = mt.Value
		}
	}
	errs := c.checkSelector(name, matchers)
	if known, ok := c.ex.labels[name]; ok && !known[m[2]] && !targetLabels[m[2]] {
		errs = append(errs, fmt.Errorf("%s has no label %q", name, m[2]))
	}
	return errs
}
