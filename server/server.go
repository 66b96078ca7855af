package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spengler-dev/spengler/collector"
)

// Options configure the HTTP handler.
type Options struct {
	Engine   *collector.Engine
	Reloader *Reloader
	// Gatherer is what /metrics serves.
	Gatherer prometheus.Gatherer
	// MetricsPath is where the metrics are served; "/metrics" when empty.
	MetricsPath string
	// Version is shown on the status page.
	Version string
	Logger  *slog.Logger
}

// Handler returns the handler of every Spengler endpoint: the metrics, the
// status JSON, the status page, health, readiness and reload.
func Handler(o Options) http.Handler {
	if o.MetricsPath == "" {
		o.MetricsPath = "/metrics"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+o.MetricsPath, promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(o.Logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /status", o.serveStatus)
	if o.MetricsPath != "/" {
		mux.HandleFunc("GET /{$}", o.servePage)
	}
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("Healthy\n"))
	})
	mux.HandleFunc("GET /-/ready", o.serveReady)
	mux.HandleFunc("POST /-/reload", o.serveReload)
	return mux
}

func (o Options) status() *Status { return buildStatus(o.Engine, o.Reloader, time.Now()) }

func (o Options) serveStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, o.status())
}

// servePage serves the status page, or the status JSON to a client that
// sends or accepts JSON.
func (o Options) servePage(w http.ResponseWriter, r *http.Request) {
	st := o.status()
	if wantsJSON(r) {
		writeJSON(w, st)
		return
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, newPageData(st, o.Version, o.MetricsPath)); err != nil {
		o.Logger.Error("Status page not rendered", "err", err)
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

func wantsJSON(r *http.Request) bool {
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil &&
		ct == "application/json" {
		return true
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil &&
			mt == "application/json" {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (o Options) serveReady(w http.ResponseWriter, _ *http.Request) {
	if o.Reloader == nil || o.Reloader.Config() == nil {
		http.Error(w, "No configuration loaded", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("Ready\n"))
}

func (o Options) serveReload(w http.ResponseWriter, _ *http.Request) {
	if o.Reloader == nil {
		http.Error(w, "reload is not available", http.StatusServiceUnavailable)
		return
	}
	if err := o.Reloader.Reload(); err != nil {
		http.Error(w, "reload failed, the previous configuration keeps running:\n"+err.Error(),
			http.StatusInternalServerError)
		return
	}
	w.Write([]byte("Configuration reloaded\n"))
}
