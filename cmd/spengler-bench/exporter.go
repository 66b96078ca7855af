package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// exporter is the Spengler process being measured.
type exporter struct {
	cmd     *exec.Cmd
	base    string
	log     *bytes.Buffer
	started time.Time
	exited  chan error
	client  *http.Client
}

// startExporter runs bin with the configuration at cfg on a free loopback
// port, and waits until it serves.
func startExporter(bin, cfg string) (*exporter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	x := &exporter{
		cmd:    exec.Command(bin, "--config.file="+cfg, "--web.listen-address="+addr, "--log.level=warn"),
		base:   "http://" + addr,
		log:    &bytes.Buffer{},
		exited: make(chan error, 1),
		client: &http.Client{Timeout: 10 * time.Second},
	}
	x.cmd.Stdout, x.cmd.Stderr = x.log, x.log
	x.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := x.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	x.started = time.Now()
	go func() { x.exited <- x.cmd.Wait() }()
	for range 100 {
		if _, err := x.get(context.Background(), "/-/ready"); err == nil {
			return x, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	x.stop()
	return nil, fmt.Errorf("spengler not ready:\n%s", x.log)
}

// stop sends SIGTERM and waits for the exit; it is a no-op once stopped.
func (x *exporter) stop() error {
	if x.cmd.ProcessState != nil {
		return nil
	}
	x.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-x.exited:
		if err != nil {
			return fmt.Errorf("spengler exited with %v:\n%s", err, x.log)
		}
		return nil
	case <-time.After(30 * time.Second):
		x.cmd.Process.Kill()
		<-x.exited
		return errors.New("spengler did not exit within 30s of SIGTERM")
	}
}

// get fetches path and returns the body.
func (x *exporter) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, x.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := x.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, err
}

// direction is what the benchmark reads of a direction in /status.
type direction struct {
	Pair      string     `json:"-"`
	Direction string     `json:"direction"`
	State     string     `json:"state"`
	InSync    bool       `json:"in_sync"`
	LastCheck *time.Time `json:"last_check"`
	Reason    string     `json:"reason"`
}

// status returns every direction of /status.
func (x *exporter) status(ctx context.Context) ([]direction, error) {
	body, err := x.get(ctx, "/status")
	if err != nil {
		return nil, err
	}
	var st struct {
		Pairs []struct {
			Name       string      `json:"name"`
			Directions []direction `json:"directions"`
		} `json:"pairs"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, err
	}
	var out []direction
	for _, p := range st.Pairs {
		for _, d := range p.Directions {
			d.Pair = p.Name
			out = append(out, d)
		}
	}
	return out, nil
}

// metrics returns the parsed exposition of /metrics.
func (x *exporter) metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	body, err := x.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(body))
}

// total sums the values of every series of the family name.
func total(families map[string]*dto.MetricFamily, name string) float64 {
	f := families[name]
	if f == nil {
		return 0
	}
	var v float64
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		}
	}
	return v
}

// waitAllChecked waits until n directions have a result.
func (x *exporter) waitAllChecked(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := x.status(ctx)
		if err == nil {
			checked := 0
			for _, d := range st {
				if d.LastCheck != nil {
					checked++
				}
			}
			if checked == n {
				return nil
			}
			err = fmt.Errorf("%d of %d directions checked", checked, n)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("wait for the first checks: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// usage is the CPU time and resident memory of the process.
type usage struct {
	cpu time.Duration
	rss int64 // bytes
}

// usage reads /proc for the exporter's CPU time and resident set.
func (x *exporter) usage() (usage, error) {
	pid := x.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	// The fields after the command name, which is in parentheses.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	if len(fields) < 22 {
		return usage{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	pages, err3 := strconv.ParseInt(fields[21], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return usage{}, err
	}
	const ticks = 100 // USER_HZ on Linux
	return usage{
		cpu: time.Duration(utime+stime) * time.Second / ticks,
		rss: pages * int64(os.Getpagesize()),
	}, nil
}
