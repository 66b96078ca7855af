// Command spengler is a Prometheus exporter that proves database replication
// works end to end, by reading the newest rows on one side of a pair and
// looking for them on the other.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/report"
	"github.com/spengler-dev/spengler/server"
)

const exporterName = "spengler"

var (
	configFile = kingpin.Flag("config.file", "Spengler configuration file.").
			Default("spengler.yml").String()
	configCheck = kingpin.Flag("config.check",
		"Validate the configuration file, print what is wrong, and exit (0 good, 1 bad).").
		Bool()
	metricsPath = kingpin.Flag("web.telemetry-path", "Path under which to expose metrics.").
			Default("/metrics").String()
	concurrency = kingpin.Flag("check.concurrency",
		"How many checks may run at once, over all pairs.").
		Default("64").Int()
	connectTimeout = kingpin.Flag("check.connect-timeout",
		"How long to wait for a new database connection (checks are bounded by their timeout too).").
		Default("5s").Duration()
	shutdownTimeout = kingpin.Flag("web.shutdown-timeout",
		"How long to wait for HTTP requests and checks in flight at shutdown.").
		Default("5s").Duration()
	once = kingpin.Flag("once",
		"Run every check once, wait until rows in flight arrive or max_lag passes, print one line per direction, and exit: 0 all in sync, 2 any out of sync, 3 a check could not run.").
		Bool()
	onceFormat = kingpin.Flag("once.format", "Output format of --once: text or csv.").
			Default("text").Enum(string(report.Text), string(report.CSV))
	webFlags = kingpinflag.AddFlags(kingpin.CommandLine, ":8442")
)

func main() {
	os.Exit(run())
}

func run() int {
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(kingpin.CommandLine, logConfig)
	kingpin.Version(version.Print(exporterName))
	kingpin.HelpFlag.Short('h')
	kingpin.Parse()
	logger := promslog.New(logConfig)

	if *configCheck {
		return checkConfig(*configFile)
	}
	if *once {
		return runOnce(*configFile, report.Format(*onceFormat), logger)
	}

	logger.Info("Starting spengler", "version", version.Info())
	logger.Info("Build context", "build_context", version.BuildContext())

	engine := collector.New(collector.Options{
		Logger:         logger,
		Concurrency:    *concurrency,
		ConnectTimeout: *connectTimeout,
	})
	defer engine.Close()
	reloader := server.NewReloader(*configFile, engine, logger)
	if err := reloader.Reload(); err != nil {
		return 1
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector(exporterName),
		collector.NewExporter(engine),
		reloader,
	)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := engine.Start(); err != nil {
		logger.Error("Checks not started", "err", err)
		return 1
	}

	srv := &http.Server{
		Handler: server.Handler(server.Options{
			Engine:      engine,
			Reloader:    reloader,
			Gatherer:    reg,
			MetricsPath: *metricsPath,
			Version:     version.Version,
			Logger:      logger,
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(srv, webFlags, logger) }()

	for {
		select {
		case <-hup:
			reloader.Reload()
		case err := <-serveErr:
			if !errors.Is(err, http.ErrServerClosed) {
				logger.Error("HTTP server failed", "err", err)
				return 1
			}
			return 0
		case <-ctx.Done():
			logger.Info("Shutting down")
			shutdownCtx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
			defer cancel()
			// Closing the engine cancels the checks in flight; a database
			// connection that still does not let go must not keep the process
			// past the shutdown timeout.
			stopped := make(chan struct{})
			go func() {
				engine.Close()
				close(stopped)
			}()
			if err := srv.Shutdown(shutdownCtx); err != nil {
				logger.Warn("HTTP server did not shut down cleanly", "err", err)
			}
			select {
			case <-stopped:
				logger.Info("Stopped")
			case <-shutdownCtx.Done():
				// The deferred engine.Close would wait for the same connections.
				logger.Warn("Database connections still closing at the shutdown timeout, exiting")
				os.Exit(0)
			}
			return 0
		}
	}
}

// runOnce checks every direction until its answer is final, prints the
// results and returns the exit code of a monitoring plugin.
func runOnce(path string, format report.Format, logger *slog.Logger) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return report.ExitError
	}
	engine := collector.New(collector.Options{
		Logger:         logger,
		Concurrency:    *concurrency,
		ConnectTimeout: *connectTimeout,
	})
	defer engine.Close()
	if err := engine.Apply(cfg); err != nil {
		logger.Error("Configuration not applied", "err", err)
		return report.ExitError
	}
	var results report.Collector
	engine.Subscribe(results.Record)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	engine.Settle(ctx, time.Second)
	if ctx.Err() != nil {
		return report.ExitError
	}
	all := results.Results()
	if err := report.Write(os.Stdout, format, all); err != nil {
		logger.Error("Cannot print the results", "err", err)
		return report.ExitError
	}
	return report.ExitCode(all)
}

// checkConfig validates a configuration file and reports what is wrong.
func checkConfig(path string) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n := 0
	for _, p := range cfg.Pairs {
		n += len(p.Checks)
	}
	fmt.Printf("%s: OK: %d databases, %d pairs, %d directions\n",
		path, len(cfg.Databases), len(cfg.Pairs), n)
	return 0
}
