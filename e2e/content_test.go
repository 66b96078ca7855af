package e2e

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// tamperSuffix marks a row changed on the target only.
const tamperSuffix = " (changed on the target only)"

// contentPairs are the content-checking pairs, for PostgreSQL ($1) or
// MariaDB (?): the version of a row is the md5 of its payload, which both
// engines write the same way.
func contentPairs(bind string) string {
	dir := func(table string) string {
		return `
      selector: select id, created_at as ts, md5(payload) as version from ` + table +
			` order by id desc limit 10
      validator: select md5(payload) from ` + table + ` where id = ` + bind
	}
	return `
  - name: content
    left: ` + map[string]string{"$1": "left", "?": "a"}[bind] + `
    right: ` + map[string]string{"$1": "right", "?": "b"}[bind] + `
    left_to_right:` + dir(dbtest.TableA) + `
    right_to_left:` + dir(dbtest.TableB) + `
`
}

// contentCase is one engine's part in the content tests.
type contentCase struct {
	s *stack
	// insert adds a row on the source of left_to_right and returns its id
	// once it is on the target too.
	insert func(ctx context.Context) (int64, error)
	// updateSource changes a row on the source of left_to_right, the normal
	// way, and returns once the change is on the target.
	updateSource func(ctx context.Context, id int64, n int) error
	// tamper changes a row on the target of left_to_right only, and restore
	// undoes that.
	tamper, restore func(ctx context.Context, id int64) error
}

// checkContent changes one row on the target only and updates another
// through replication, and checks that only the first is reported
// divergent, after max_lag and not before, and no more once restored.
func checkContent(t *testing.T, c contentCase) {
	ctx := t.Context()
	var ids []int64
	for range 3 {
		id, err := c.insert(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	s := c.s
	trail := trailResults(t, s)
	for _, dir := range []string{"left_to_right", "right_to_left"} {
		s.waitState(t, "content", dir, "in_sync", 15*time.Second)
	}
	tampered, updated := ids[1], ids[2]
	tamperedID := strconv.FormatInt(tampered, 10)

	start := time.Now()
	if err := c.tamper(ctx, tampered); err != nil {
		t.Fatal(err)
	}
	restored := false
	defer func() {
		if !restored {
			c.restore(context.Background(), tampered)
		}
	}()
	// While the tampered row waits out max_lag, the other row changes on the
	// source a few times, each change replicated.
	for i := range 3 {
		if err := c.updateSource(ctx, updated, i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(interval)
	}
	st := s.direction(t, "content", "left_to_right")
	for st.RowsDivergent == 0 && time.Since(start) < detect+2*time.Second {
		time.Sleep(100 * time.Millisecond)
		st = s.direction(t, "content", "left_to_right")
	}
	took := time.Since(start)
	if st.RowsDivergent != 1 || !slices.Equal(st.DivergentIDs, []string{tamperedID}) ||
		st.InSync || !strings.Contains(st.Reason, "differ on the target") {
		t.Fatalf("after %v: %+v, want row %s divergent and the direction out of sync", took, st,
			tamperedID)
	}
	if took > detect+500*time.Millisecond {
		t.Errorf("divergence reported after %v, want within max_lag+interval+timeout = %v",
			took, detect)
	}
	if st.RowsMissing != 0 || !st.Success {
		t.Errorf("divergent row: %+v, want no missing rows and a check that ran", st)
	}
	labels := `direction="left_to_right",pair="content"`
	if v, _ := s.metric(t, "spengler_replication_rows_divergent", labels); v != "1" {
		t.Errorf("spengler_replication_rows_divergent{%s} = %q, want 1", labels, v)
	}
	if v, _ := s.metric(t, "spengler_replication_rows_divergent",
		`direction="right_to_left",pair="content"`); v != "0" {
		t.Errorf("spengler_replication_rows_divergent for right_to_left = %q, want 0", v)
	}

	if err := c.restore(ctx, tampered); err != nil {
		t.Fatal(err)
	}
	restored = true
	s.waitState(t, "content", "left_to_right", "in_sync", detect)
	if st := s.direction(t, "content", "left_to_right"); st.RowsDivergent != 0 ||
		len(st.DivergentIDs) != 0 {
		t.Errorf("after restoring: %+v, want nothing divergent", st)
	}

	// Every check on the way: nothing divergent before max_lag had passed,
	// never the row updated through replication, never the other direction.
	for _, r := range trail.of("content", "left_to_right", start) {
		if r.RowsDivergent > 0 && r.LastCheck.Sub(start) <= maxLag {
			t.Errorf("check at +%v reported %v divergent, before max_lag (%v) had passed",
				r.LastCheck.Sub(start), r.DivergentIDs, maxLag)
		}
		if slices.Contains(r.DivergentIDs, strconv.FormatInt(updated, 10)) {
			t.Errorf("check at +%v reported the replicated update %d divergent",
				r.LastCheck.Sub(start), updated)
		}
	}
	for _, r := range trail.of("content", "right_to_left", start) {
		if r.RowsDivergent != 0 || !r.InSync {
			t.Errorf("right_to_left at +%v: divergent %d, state %q (%s); want in sync",
				r.LastCheck.Sub(start), r.RowsDivergent, r.State, r.Reason)
		}
	}
}

// TestContentCheckLogical runs content checks on the two-way logical pair of
// the Env.
func TestContentCheckLogical(t *testing.T) {
	env := dbtest.SharedEnv(t)
	// A row of b_rows, so that right_to_left has something to prove.
	id, err := env.Right.InsertRows(t.Context(), dbtest.EnvDB, dbtest.TableB, 1)
	if err == nil {
		err = env.Left.WaitRow(t.Context(), dbtest.EnvDB, dbtest.TableB, id)
	}
	if err != nil {
		t.Fatal(err)
	}
	const payloadIs = "select count(*) from a_rows where id = $1 and payload = $2"
	checkContent(t, contentCase{
		s: startStack(t, envConfig(env, "", contentPairs("$1"))),
		insert: func(ctx context.Context) (int64, error) {
			id, err := env.Left.InsertRows(ctx, dbtest.EnvDB, dbtest.TableA, 1)
			if err == nil {
				err = env.Right.WaitRow(ctx, dbtest.EnvDB, dbtest.TableA, id)
			}
			return id, err
		},
		updateSource: func(ctx context.Context, id int64, n int) error {
			payload := "updated on the source " + strconv.Itoa(n)
			err := env.Left.ExecDB(ctx, dbtest.EnvDB,
				"update a_rows set payload = $2 where id = $1", id, payload)
			if err != nil {
				return err
			}
			return env.Right.WaitInt(ctx, dbtest.EnvDB, 1, payloadIs, id, payload)
		},
		// a_rows is published from the left only: a change on the right stays there.
		tamper: func(ctx context.Context, id int64) error {
			return env.Right.ExecDB(ctx, dbtest.EnvDB,
				"update a_rows set payload = payload || $2 where id = $1", id, tamperSuffix)
		},
		restore: func(ctx context.Context, id int64) error {
			return env.Right.ExecDB(ctx, dbtest.EnvDB,
				"update a_rows set payload = replace(payload, $2, '') where id = $1", id, tamperSuffix)
		},
	})
}

// TestMariaDBContentCheck runs content checks on the MariaEnv. A change on
// the target only is made without binary logging, so that it does not
// travel back.
func TestMariaDBContentCheck(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	if id, err := env.Insert(t.Context(), dbtest.BToA, 1); err != nil {
		t.Fatal(err)
	} else if err := env.WaitReplicated(t.Context(), dbtest.BToA, id); err != nil {
		t.Fatal(err)
	}
	const payloadIs = "select count(*) from a_rows where id = ? and payload = ?"
	quoted := "'" + strings.ReplaceAll(tamperSuffix, "'", "''") + "'"
	checkContent(t, contentCase{
		s: startStack(t, mariaConfig(env, "", contentPairs("?"))),
		insert: func(ctx context.Context) (int64, error) {
			id, err := env.Insert(ctx, dbtest.AToB, 1)
			if err == nil {
				err = env.WaitReplicated(ctx, dbtest.AToB, id)
			}
			return id, err
		},
		updateSource: func(ctx context.Context, id int64, n int) error {
			payload := "updated on the source " + strconv.Itoa(n)
			err := env.A.ExecDB(ctx, dbtest.EnvDB,
				"update a_rows set payload = ? where id = ?", payload, id)
			if err != nil {
				return err
			}
			return env.B.WaitInt(ctx, dbtest.EnvDB, 1, payloadIs, id, payload)
		},
		tamper: func(ctx context.Context, id int64) error {
			return env.B.ExecDB(ctx, dbtest.EnvDB, "set sql_log_bin = 0; "+
				"update a_rows set payload = concat(payload, "+quoted+") where id = "+
				strconv.FormatInt(id, 10))
		},
		restore: func(ctx context.Context, id int64) error {
			return env.B.ExecDB(ctx, dbtest.EnvDB, "set sql_log_bin = 0; "+
				"update a_rows set payload = replace(payload, "+quoted+", '') where id = "+
				strconv.FormatInt(id, 10))
		},
	})
}
