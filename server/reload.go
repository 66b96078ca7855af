// Package server serves Spengler's HTTP endpoints and manages the running
// configuration: loading it, reloading it, and reporting on both.
package server

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/config"
)

// Reloader loads the configuration file and applies it to an engine. A file
// that fails to load or apply leaves the running configuration in place.
type Reloader struct {
	path   string
	engine *collector.Engine
	log    *slog.Logger

	mu       sync.Mutex // serialises reloads
	current  atomic.Pointer[config.Config]
	okGauge  prometheus.Gauge
	tsGauge  prometheus.Gauge
	lastErr  atomic.Pointer[string]
	lastLoad atomic.Int64 // Unix nanoseconds of the last good load
}

// NewReloader returns a Reloader of the file at path for engine. A nil log
// discards the messages.
func NewReloader(path string, engine *collector.Engine, log *slog.Logger) *Reloader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reloader{
		path:   path,
		engine: engine,
		log:    log,
		okGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spengler_config_last_reload_successful",
			Help: "1 when the last load of the configuration file succeeded, else 0.",
		}),
		tsGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spengler_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful load of the configuration file.",
		}),
	}
}

// Reload loads the file and applies it. On failure the running
// configuration stays, and the error says why.
func (r *Reloader) Reload() (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() { r.record(err) }()

	cfg, err := config.Load(r.path)
	if err != nil {
		return err
	}
	if err := r.engine.Apply(cfg); err != nil {
		return err
	}
	r.current.Store(cfg)
	return nil
}

func (r *Reloader) record(err error) {
	if err != nil {
		msg := err.Error()
		r.lastErr.Store(&msg)
		r.okGauge.Set(0)
		r.log.Error("Configuration not loaded", "file", r.path, "err", err)
		return
	}
	now := time.Now()
	r.lastErr.Store(nil)
	r.lastLoad.Store(now.UnixNano())
	r.okGauge.Set(1)
	r.tsGauge.Set(float64(now.UnixNano()) / 1e9)
	r.log.Info("Configuration loaded", "file", r.path)
}

// Config returns the running configuration, or nil before the first good load.
func (r *Reloader) Config() *config.Config { return r.current.Load() }

// LastError returns the error of the last load, or nil when it succeeded.
func (r *Reloader) LastError() error {
	if p := r.lastErr.Load(); p != nil {
		return errors.New(*p)
	}
	return nil
}

// LastSuccess returns the time of the last good load; zero if none.
func (r *Reloader) LastSuccess() time.Time {
	if n := r.lastLoad.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Describe sends the descriptions of the configuration metrics.
func (r *Reloader) Describe(ch chan<- *prometheus.Desc) {
	r.okGauge.Describe(ch)
	r.tsGauge.Describe(ch)
}

// Collect sends the configuration metrics.
func (r *Reloader) Collect(ch chan<- prometheus.Metric) {
	r.okGauge.Collect(ch)
	r.tsGauge.Collect(ch)
}
