package server

import (
	"time"

	"github.com/spengler-dev/spengler/collector"
)

// Status is the JSON document served at /status.
type Status struct {
	GeneratedAt time.Time        `json:"generated_at"`
	Config      ConfigStatus     `json:"config"`
	Databases   []DatabaseStatus `json:"databases"`
	Pairs       []PairStatus     `json:"pairs"`
}

// ConfigStatus tells whether the configuration file last loaded.
type ConfigStatus struct {
	File                  string     `json:"file"`
	LastReloadSuccessful  bool       `json:"last_reload_successful"`
	LastReloadSuccessTime *time.Time `json:"last_reload_success_time,omitempty"`
	LastReloadError       string     `json:"last_reload_error,omitempty"`
}

// DatabaseStatus tells whether a database answered when last used.
type DatabaseStatus struct {
	Name string `json:"name"`
	// Up is null until the database has been used.
	Up *bool `json:"up"`
}

// PairStatus is one pair and its directions.
type PairStatus struct {
	Name       string            `json:"name"`
	Directions []DirectionStatus `json:"directions"`
}

// DirectionStatus is the latest result of one direction.
type DirectionStatus struct {
	Direction string `json:"direction"`
	Source    string `json:"source"`
	Target    string `json:"target"`
	// State is in_sync, out_of_sync, error, or unknown before the first check.
	State           string     `json:"state"`
	InSync          bool       `json:"in_sync"`
	Success         bool       `json:"success"`
	Reason          string     `json:"reason,omitempty"`
	Error           string     `json:"error,omitempty"`
	LagSeconds      float64    `json:"lag_seconds"`
	LastCheck       *time.Time `json:"last_check"`
	LastInSync      *time.Time `json:"last_in_sync"`
	DurationSeconds float64    `json:"duration_seconds"`
	RowsSelected    int        `json:"rows_selected"`
	RowsChecked     int        `json:"rows_checked"`
	RowsMissing     int        `json:"rows_missing"`
	RowsPending     int        `json:"rows_pending"`
	MissingIDs      []string   `json:"missing_ids"`
	RowsDivergent   int        `json:"rows_divergent"`
	DivergentIDs    []string   `json:"divergent_ids"`
	// HeartbeatAgeSeconds is set for a direction with a heartbeat.
	HeartbeatAgeSeconds *float64          `json:"heartbeat_age_seconds,omitempty"`
	Checks              map[string]uint64 `json:"checks"`
	IntervalSeconds     float64           `json:"interval_seconds"`
	MaxLagSeconds       float64           `json:"max_lag_seconds"`
}

// StateUnknown is the state of a direction before its first check.
const StateUnknown = "unknown"

func buildStatus(e *collector.Engine, r *Reloader, now time.Time) *Status {
	st := &Status{GeneratedAt: now.UTC(), Databases: []DatabaseStatus{}, Pairs: []PairStatus{}}
	if r != nil {
		st.Config.File = r.path
		// Like spengler_config_last_reload_successful: false until a load
		// has succeeded, and false again after a failed one.
		err := r.LastError()
		st.Config.LastReloadSuccessful = err == nil && r.Config() != nil
		if err != nil {
			st.Config.LastReloadError = err.Error()
		}
		st.Config.LastReloadSuccessTime = timePtr(r.LastSuccess())
	}
	for _, d := range e.Databases() {
		ds := DatabaseStatus{Name: d.Name}
		if d.Known {
			up := d.Up
			ds.Up = &up
		}
		st.Databases = append(st.Databases, ds)
	}
	for _, ds := range e.Status() {
		if n := len(st.Pairs); n == 0 || st.Pairs[n-1].Name != ds.Config.Pair {
			st.Pairs = append(st.Pairs, PairStatus{Name: ds.Config.Pair})
		}
		p := &st.Pairs[len(st.Pairs)-1]
		p.Directions = append(p.Directions, directionStatus(ds))
	}
	return st
}

func directionStatus(ds collector.DirectionStatus) DirectionStatus {
	c := ds.Config
	out := DirectionStatus{
		Direction: c.Name, Source: c.Source, Target: c.Target,
		State:           StateUnknown,
		Reason:          "not checked yet",
		MissingIDs:      []string{},
		DivergentIDs:    []string{},
		Checks:          map[string]uint64{},
		IntervalSeconds: c.Interval.Seconds(),
		MaxLagSeconds:   c.MaxLag.Seconds(),
	}
	r := ds.Latest
	if r == nil {
		return out
	}
	out.State = string(r.State)
	out.InSync = r.InSync
	out.Success = r.Success
	out.Reason = r.Reason
	out.Error = r.Error
	out.LagSeconds = r.Lag.Seconds()
	out.LastCheck = timePtr(r.LastCheck)
	out.LastInSync = timePtr(r.LastInSync)
	out.DurationSeconds = r.Duration.Seconds()
	out.RowsSelected = r.RowsSelected
	out.RowsChecked = r.RowsChecked
	out.RowsMissing = r.RowsMissing
	out.RowsPending = r.Pending
	out.MissingIDs = append(out.MissingIDs, r.MissingIDs...)
	out.RowsDivergent = r.RowsDivergent
	out.DivergentIDs = append(out.DivergentIDs, r.DivergentIDs...)
	if r.Heartbeat {
		age := r.HeartbeatAge.Seconds()
		out.HeartbeatAgeSeconds = &age
	}
	for k, v := range r.Checks {
		out.Checks[string(k)] = v
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
