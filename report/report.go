// Package report prints the results of Spengler's checks for people and
// programs: the one-shot mode's text and CSV outputs and its exit code, in
// the manner of a monitoring plugin.
package report

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spengler-dev/spengler/collector"
)

// Exit codes of the one-shot mode.
const (
	ExitInSync    = 0 // every direction in sync
	ExitOutOfSync = 2 // at least one direction out of sync
	ExitError     = 3 // a check could not run, and none is out of sync
)

// Format is an output format.
type Format string

// The output formats.
const (
	Text Format = "text"
	CSV  Format = "csv"
)

// Collector keeps the latest result of every direction it is told about.
// Its Record method is a collector.Callback: subscribe it to an engine.
type Collector struct {
	mu     sync.Mutex
	latest map[[2]string]*collector.Result
}

// Record keeps r as the latest result of its direction.
func (c *Collector) Record(r *collector.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.latest == nil {
		c.latest = make(map[[2]string]*collector.Result)
	}
	c.latest[[2]string{r.Pair, r.Direction}] = r
}

// Results returns the latest result of every direction, ordered by pair and
// direction.
func (c *Collector) Results() []*collector.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*collector.Result, 0, len(c.latest))
	for _, r := range c.latest {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *collector.Result) int {
		return cmp.Or(cmp.Compare(a.Pair, b.Pair), cmp.Compare(a.Direction, b.Direction))
	})
	return out
}

// ExitCode returns the one-shot mode's exit code for results: out of sync
// wins over a failed check, which wins over in sync. No result at all is a
// failure to check.
func ExitCode(results []*collector.Result) int {
	code := ExitInSync
	if len(results) == 0 {
		return ExitError
	}
	for _, r := range results {
		switch r.State {
		case collector.StateOutOfSync:
			return ExitOutOfSync
		case collector.StateError:
			code = ExitError
		}
	}
	return code
}

// Write prints results in format f.
func Write(w io.Writer, f Format, results []*collector.Result) error {
	switch f {
	case Text, "":
		return WriteText(w, results)
	case CSV:
		return WriteCSV(w, results)
	default:
		return fmt.Errorf("unknown format %q (text, csv)", f)
	}
}

// WriteText prints one line per direction: its state, the pair, the
// direction, the databases, the figures, and why it is not in sync.
func WriteText(w io.Writer, results []*collector.Result) error {
	for _, r := range results {
		var b strings.Builder
		fmt.Fprintf(&b, "%-11s %s %s (%s -> %s): lag=%s checked=%d missing=%d duration=%s",
			stateWord(r), r.Pair, r.Direction, r.Source, r.Target,
			seconds(r.Lag), r.RowsChecked, r.RowsMissing, seconds(r.Duration))
		if len(r.MissingIDs) > 0 {
			fmt.Fprintf(&b, " missing_ids=%s", strings.Join(r.MissingIDs, ","))
		}
		if r.Error != "" {
			fmt.Fprintf(&b, " error=%q", r.Error)
		} else if r.Reason != "" {
			fmt.Fprintf(&b, " reason=%q", r.Reason)
		}
		b.WriteByte('\n')
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// CSVHeader is the header line of the CSV output.
var CSVHeader = []string{"synced", "pair", "direction", "source", "target",
	"rows_checked", "rows_missing", "lag_seconds", "duration_seconds", "error"}

// WriteCSV prints a header line and one line per direction. The error
// column holds the check's error, or else why the direction is not in sync.
func WriteCSV(w io.Writer, results []*collector.Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, r := range results {
		reason := r.Error
		if reason == "" {
			reason = r.Reason
		}
		err := cw.Write([]string{
			strconv.FormatBool(r.InSync), r.Pair, r.Direction, r.Source, r.Target,
			strconv.Itoa(r.RowsChecked), strconv.Itoa(r.RowsMissing),
			strconv.FormatFloat(r.Lag.Seconds(), 'f', 3, 64),
			strconv.FormatFloat(r.Duration.Seconds(), 'f', 3, 64),
			reason,
		})
		if err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func stateWord(r *collector.Result) string {
	switch r.State {
	case collector.StateInSync:
		return "IN_SYNC"
	case collector.StateOutOfSync:
		return "OUT_OF_SYNC"
	default:
		return "ERROR"
	}
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s"
}
