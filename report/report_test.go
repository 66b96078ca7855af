package report

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/collector"
)

func result(pair, dir string, state collector.State) *collector.Result {
	return &collector.Result{Pair: pair, Direction: dir, Source: "east", Target: "west",
		State: state, InSync: state == collector.StateInSync, RowsChecked: 3,
		Lag: 1500 * time.Millisecond, Duration: 20 * time.Millisecond}
}

func TestExitCode(t *testing.T) {
	in := result("a", "left_to_right", collector.StateInSync)
	out := result("b", "left_to_right", collector.StateOutOfSync)
	bad := result("c", "left_to_right", collector.StateError)
	tests := []struct {
		name    string
		results []*collector.Result
		want    int
	}{
		{"all in sync", []*collector.Result{in, in}, ExitInSync},
		{"one out of sync", []*collector.Result{in, out}, ExitOutOfSync},
		{"out of sync wins over error", []*collector.Result{bad, out, in}, ExitOutOfSync},
		{"error", []*collector.Result{in, bad}, ExitError},
		{"nothing checked", nil, ExitError},
	}
	for _, tc := range tests {
		if got := ExitCode(tc.results); got != tc.want {
			t.Errorf("%s: ExitCode = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestWriteCSV(t *testing.T) {
	out := result("orders", "right_to_left", collector.StateOutOfSync)
	out.Reason = "2 rows missing, the oldest for 3m0s"
	out.RowsMissing = 2
	bad := result("orders", "left_to_right", collector.StateError)
	bad.Error = `target "west": connect: timed out, "really"`
	var buf bytes.Buffer
	if err := Write(&buf, CSV, []*collector.Result{bad, out}); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v\n%s", err, buf.String())
	}
	want := [][]string{
		CSVHeader,
		{"false", "orders", "left_to_right", "east", "west", "3", "0", "1.500", "0.020", bad.Error},
		{"false", "orders", "right_to_left", "east", "west", "3", "2", "1.500", "0.020", out.Reason},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d:\n%s", len(recs), len(want), buf.String())
	}
	for i := range want {
		if strings.Join(recs[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("record %d = %q, want %q", i, recs[i], want[i])
		}
	}
}

func TestWriteText(t *testing.T) {
	in := result("orders", "left_to_right", collector.StateInSync)
	out := result("orders", "right_to_left", collector.StateOutOfSync)
	out.MissingIDs = []string{"17", "18"}
	out.Reason = "rows missing"
	var buf bytes.Buffer
	if err := Write(&buf, Text, []*collector.Result{in, out}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	if !strings.HasPrefix(lines[0], "IN_SYNC     orders left_to_right (east -> west): lag=1.500s") {
		t.Errorf("line 1 = %q", lines[0])
	}
	for _, s := range []string{"OUT_OF_SYNC", "missing_ids=17,18", `reason="rows missing"`} {
		if !strings.Contains(lines[1], s) {
			t.Errorf("line 2 = %q, want it to contain %q", lines[1], s)
		}
	}
	if err := Write(&buf, "xml", nil); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestCollectorKeepsLatestInOrder(t *testing.T) {
	var c Collector
	c.Record(result("b", "left_to_right", collector.StateError))
	c.Record(result("a", "right_to_left", collector.StateInSync))
	c.Record(result("a", "left_to_right", collector.StateInSync))
	c.Record(result("b", "left_to_right", collector.StateInSync))
	got := c.Results()
	var names []string
	for _, r := range got {
		names = append(names, r.Pair+"/"+r.Direction+"/"+string(r.State))
	}
	want := "a/left_to_right/in_sync a/right_to_left/in_sync b/left_to_right/in_sync"
	if strings.Join(names, " ") != want {
		t.Errorf("Results = %v, want %s", names, want)
	}
}
