package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// allDirections are the directions of envConfig.
var allDirections = [][2]string{
	{"stream", "left_to_right"},
	{"logical", "left_to_right"},
	{"logical", "right_to_left"},
}

func TestHealthyPairsInSync(t *testing.T) {
	env := dbtest.SharedEnv(t)
	writers(t, env)
	s := startStack(t, envConfig(env, "", ""))

	for _, d := range allDirections {
		s.waitState(t, d[0], d[1], "in_sync", 10*time.Second)
	}
	for _, d := range allDirections {
		st := s.direction(t, d[0], d[1])
		if !st.InSync || !st.Success || st.RowsChecked == 0 || st.LastInSync == nil {
			t.Errorf("%s %s: %+v, want in sync after a real check", d[0], d[1], st)
		}
		if v, ok := s.metric(t, "spengler_replication_in_sync",
			`direction="`+d[1]+`",pair="`+d[0]+`"`); !ok || v != "1" {
			t.Errorf("%s %s: spengler_replication_in_sync = %q, want 1", d[0], d[1], v)
		}
	}
	for _, db := range []string{"primary", "standby", "left", "right"} {
		if v, _ := s.metric(t, "spengler_database_up", `database="`+db+`"`); v != "1" {
			t.Errorf("spengler_database_up{database=%q} = %q, want 1", db, v)
		}
	}
}

// breakCase is one way to break one direction of the Env.
type breakCase struct {
	pair, dir string
	brk, heal func(context.Context, *dbtest.Env) error
}

func TestBrokenDirectionDetected(t *testing.T) {
	env := dbtest.SharedEnv(t)
	cases := []breakCase{
		{"logical", "left_to_right",
			func(ctx context.Context, e *dbtest.Env) error { return e.Logical.BreakAToB(ctx) },
			func(ctx context.Context, e *dbtest.Env) error { return e.Logical.HealAToB(ctx) }},
		{"logical", "right_to_left",
			func(ctx context.Context, e *dbtest.Env) error { return e.Logical.BreakBToA(ctx) },
			func(ctx context.Context, e *dbtest.Env) error { return e.Logical.HealBToA(ctx) }},
		{"stream", "left_to_right",
			func(ctx context.Context, e *dbtest.Env) error { return e.Standby.PauseReplay(ctx) },
			func(ctx context.Context, e *dbtest.Env) error { return e.Standby.ResumeReplay(ctx) }},
	}
	writers(t, env)
	s := startStack(t, envConfig(env, "", ""))
	for _, d := range allDirections {
		s.waitState(t, d[0], d[1], "in_sync", 10*time.Second)
	}
	for _, tc := range cases {
		t.Run(tc.pair+"/"+tc.dir, func(t *testing.T) {
			ctx := t.Context()
			others := map[[2]string]string{}
			for _, d := range allDirections {
				if d != [2]string{tc.pair, tc.dir} {
					others[d] = badChecks(s.direction(t, d[0], d[1]).Checks)
				}
			}
			if err := tc.brk(ctx, env); err != nil {
				t.Fatal(err)
			}
			healed := false
			defer func() {
				if !healed {
					tc.heal(context.Background(), env)
				}
			}()
			// Rows written from now on cannot arrive; the writer adds one within 200ms.
			took := s.waitState(t, tc.pair, tc.dir, "out_of_sync", detect+2*time.Second)
			if took > detect+500*time.Millisecond {
				t.Errorf("detected after %v, want within max_lag+interval+timeout = %v", took, detect)
			}
			st := s.direction(t, tc.pair, tc.dir)
			if st.InSync || st.RowsMissing == 0 || len(st.MissingIDs) == 0 ||
				!strings.Contains(st.Reason, "not on the target") {
				t.Errorf("broken direction: %+v, want missing rows and a reason", st)
			}
			lag1 := st.LagSeconds
			time.Sleep(2 * interval)
			lag2 := s.direction(t, tc.pair, tc.dir).LagSeconds
			if !(lag1 > maxLag.Seconds() && lag2 > lag1) {
				t.Errorf("lag %v then %v, want above max_lag and growing", lag1, lag2)
			}
			for d, before := range others {
				st := s.direction(t, d[0], d[1])
				after := badChecks(st.Checks)
				if !st.InSync || after != before {
					t.Errorf("%s %s was affected: state %q, out_of_sync/error checks %s -> %s",
						d[0], d[1], st.State, before, after)
				}
			}

			if err := tc.heal(ctx, env); err != nil {
				t.Fatal(err)
			}
			healed = true
			s.waitState(t, tc.pair, tc.dir, "in_sync", detect+5*time.Second)
			if st := s.direction(t, tc.pair, tc.dir); st.RowsPending > 20 {
				t.Errorf("after healing %d rows still pending", st.RowsPending)
			}
		})
	}
}

// badChecks writes the out-of-sync and error counts of a direction.
func badChecks(c map[string]uint64) string {
	return strconv.FormatUint(c["out_of_sync"], 10) + "/" + strconv.FormatUint(c["error"], 10)
}
