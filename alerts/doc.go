// Package alerts holds Spengler's Prometheus rules, spengler.rules.yml, and
// their promtool unit tests, spengler.rules.test.yml. It has no Go API: its
// tests check that the rules and the Grafana dashboard in ../dashboards name
// only metrics and labels the exporter really exports, that every alert is
// documented in ../docs/runbook.md, and that promtool accepts the rules and
// passes their unit tests.
package alerts
