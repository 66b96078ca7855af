package collector

import (
	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "spengler"

var dirLabels = []string{"pair", "direction", "source", "target"}

func newDesc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
}

var (
	inSyncDesc = newDesc("replication", "in_sync",
		"1 when the last background check proved the direction in sync, else 0.", dirLabels...)
	lagDesc = newDesc("replication", "lag_seconds",
		"Age of the oldest row seen on the source and not yet on the target, as of the last "+
			"background check; 0 when none is pending.", dirLabels...)
	lastInSyncDesc = newDesc("replication", "last_in_sync_timestamp_seconds",
		"Unix time of the last background check that found the direction in sync; 0 if none.",
		dirLabels...)
	rowsCheckedDesc = newDesc("replication", "rows_checked",
		"Ids the last background check asked the target about.", dirLabels...)
	rowsMissingDesc = newDesc("replication", "rows_missing",
		"Ids still not on the target after max_lag, as of the last background check.",
		dirLabels...)
	rowsDivergentDesc = newDesc("replication", "rows_divergent",
		"Rows whose version on the target has differed from the source's for longer than "+
			"max_lag, as of the last background check; 0 without content checks.", dirLabels...)
	heartbeatAgeDesc = newDesc("replication", "heartbeat_age_seconds",
		"Exporter clock minus the heartbeat found on the target (until one is found, the time "+
			"since the first was written), as of the last background check; only for directions "+
			"with a heartbeat.", dirLabels...)
	rowsPendingDesc = newDesc("replication", "rows_pending",
		"Ids seen on the source and not yet on the target, as of the last background check.",
		dirLabels...)
	successDesc = newDesc("check", "success",
		"1 when the last background check ran without error, else 0.", dirLabels...)
	durationDesc = newDesc("check", "duration_seconds",
		"Wall time of the last background check.", dirLabels...)
	lastRunDesc = newDesc("check", "last_run_timestamp_seconds",
		"Unix time the last background check finished.", dirLabels...)
	checksDesc = newDesc("", "checks_total",
		"Background checks by result: in_sync, out_of_sync or error.",
		append(dirLabels[:len(dirLabels):len(dirLabels)], "result")...)
	dbUpDesc = newDesc("database", "up",
		"1 when the database answered the last time a check used it, else 0.", "database")
)

// Exporter is a prometheus.Collector for the results of an Engine. Collect
// only reads the latest published results: a scrape never touches a
// database and never waits for a check.
type Exporter struct {
	engine *Engine
}

var _ prometheus.Collector = (*Exporter)(nil)

// NewExporter returns a collector of e's results.
func NewExporter(e *Engine) *Exporter { return &Exporter{engine: e} }

// Describe sends every metric description the Exporter emits.
func (x *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		inSyncDesc, lagDesc, lastInSyncDesc, rowsCheckedDesc, rowsMissingDesc,
		rowsDivergentDesc, heartbeatAgeDesc, rowsPendingDesc, successDesc, durationDesc,
		lastRunDesc, checksDesc, dbUpDesc,
	} {
		ch <- d
	}
}

// Collect sends the metrics of the latest result of every direction and the
// state of every database.
func (x *Exporter) Collect(ch chan<- prometheus.Metric) {
	for _, r := range x.engine.Results() {
		lv := []string{r.Pair, r.Direction, r.Source, r.Target}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
		}
		gauge(inSyncDesc, boolFloat(r.InSync))
		gauge(lagDesc, r.Lag.Seconds())
		lastInSync := 0.0
		if !r.LastInSync.IsZero() {
			lastInSync = unixSeconds(r)
		}
		gauge(lastInSyncDesc, lastInSync)
		gauge(rowsCheckedDesc, float64(r.RowsChecked))
		gauge(rowsMissingDesc, float64(r.RowsMissing))
		gauge(rowsDivergentDesc, float64(r.RowsDivergent))
		if r.Heartbeat {
			gauge(heartbeatAgeDesc, r.HeartbeatAge.Seconds())
		}
		gauge(rowsPendingDesc, float64(r.Pending))
		gauge(successDesc, boolFloat(r.Success))
		gauge(durationDesc, r.Duration.Seconds())
		gauge(lastRunDesc, float64(r.LastCheck.UnixNano())/1e9)
		for _, s := range []State{StateInSync, StateOutOfSync, StateError} {
			ch <- prometheus.MustNewConstMetric(checksDesc, prometheus.CounterValue,
				float64(r.Checks[s]), append(lv, string(s))...)
		}
	}
	for _, d := range x.engine.Databases() {
		if d.Known {
			ch <- prometheus.MustNewConstMetric(dbUpDesc, prometheus.GaugeValue,
				boolFloat(d.Up), d.Name)
		}
	}
}

func unixSeconds(r *Result) float64 { return float64(r.LastInSync.UnixNano()) / 1e9 }

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
