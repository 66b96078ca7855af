package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
	"github.com/spengler-dev/spengler/server"
)

// Tables of the mixed pairs. mix_pg is written on PostgreSQL (server Left of
// the Env) and copied to MariaDB (server A of the MariaEnv); mix_my is
// written on MariaDB and copied to PostgreSQL. The copies keep the ids.
const (
	mixPGSource = `create table if not exists mix_pg (
		id bigint generated always as identity primary key,
		payload text not null default '',
		created_at timestamptz not null default now())`
	mixPGTarget = `create table if not exists mix_my (
		id bigint primary key,
		payload text not null default '',
		copied_at timestamptz not null default now())`
	mixMariaSource = "create table if not exists mix_my (" +
		"id bigint not null auto_increment primary key, " +
		"payload varchar(255) not null default '', " +
		"created_at timestamp(6) not null default current_timestamp(6)) engine=InnoDB"
	mixMariaTarget = "create table if not exists mix_pg (" +
		"id bigint not null primary key, " +
		"payload varchar(255) not null default '', " +
		"copied_at timestamp(6) not null default current_timestamp(6)) engine=InnoDB"
)

// mixedConfig has three pairs of PostgreSQL database pg and MariaDB database
// maria: cdc (pg to maria only), cdc_back (maria to pg only) and mixed (both
// ways, with per-direction queries). The selectors take 10 rows: written
// every 200ms, a row leaves the selection before it is overdue, so that
// missing rows are asked about on the source again, in the source's dialect.
func mixedConfig(env *dbtest.Env, menv *dbtest.MariaEnv) string {
	return fmt.Sprintf(`
global: {interval: %s, timeout: %s, max_lag: %s, max_rows: 20}
databases:
  pg: {driver: postgres, dsn: "%s"}
  maria: {driver: mysql, dsn: "%s"}
pairs:
  - name: cdc
    left: pg
    right: maria
    directions: [left_to_right]
    selector: select id, created_at as ts from mix_pg order by id desc limit 10
    validator: select count(*) from mix_pg where id = ?
  - name: cdc_back
    left: maria
    right: pg
    directions: [left_to_right]
    selector: select id, created_at as ts from mix_my order by id desc limit 10
    validator: select count(*) from mix_my where id = $1
  - name: mixed
    left: pg
    right: maria
    left_to_right:
      selector: select id, created_at as ts from mix_pg order by id desc limit 10
      validator: select count(*) from mix_pg where id = ?
    right_to_left:
      selector: select id, created_at as ts from mix_my order by id desc limit 10
      validator: select count(*) from mix_my where id = $1
`, interval, timeout, maxLag, env.Left.DSN(dbtest.EnvDB), menv.MonitorDSN(menv.A))
}

// intQuerier runs a query that selects one integer.
type intQuerier func(ctx context.Context, query string, args ...any) (int64, error)

// mixedStage is one copier of TestMixedPostgresMariaDB paused and resumed.
type mixedStage struct {
	name     string
	copier   *copier
	table    string
	broken   [][2]string // the directions the copier carries
	source   intQuerier  // on the server the table is written on
	target   intQuerier  // on the server it is copied to
	param    string      // the bind parameter of source's queries
	tgtParam string      // the bind parameter of target's queries
}

func TestMixedPostgresMariaDB(t *testing.T) {
	env := dbtest.SharedEnv(t)
	menv := dbtest.SharedMariaEnv(t)
	ctx := t.Context()
	if err := env.Left.ExecDB(ctx, dbtest.EnvDB, mixPGSource+"; "+mixPGTarget); err != nil {
		t.Fatal(err)
	}
	if err := menv.A.ExecDB(ctx, dbtest.EnvDB, mixMariaSource+"; "+mixMariaTarget); err != nil {
		t.Fatal(err)
	}
	writer(t, env.Left, "mix_pg")
	rowWriter(t, menv.A, "mix_my")
	toMaria := startCopier(t, openPGTable(t, env.Left, "mix_pg"), openMariaTable(t, menv.A, "mix_pg"))
	toPG := startCopier(t, openMariaTable(t, menv.A, "mix_my"), openPGTable(t, env.Left, "mix_my"))
	s := startStack(t, mixedConfig(env, menv))

	all := [][2]string{
		{"cdc", "left_to_right"}, {"mixed", "left_to_right"},
		{"cdc_back", "left_to_right"}, {"mixed", "right_to_left"},
	}
	for _, d := range all {
		s.waitState(t, d[0], d[1], "in_sync", 15*time.Second)
	}
	for _, c := range []*copier{toMaria, toPG} {
		if err := c.failure(); err != nil {
			t.Fatal(err)
		}
	}
	for _, db := range []string{"pg", "maria"} {
		if v, _ := s.metric(t, "spengler_database_up", `database="`+db+`"`); v != "1" {
			t.Errorf("spengler_database_up{database=%q} = %q, want 1", db, v)
		}
	}

	pgInt := func(ctx context.Context, q string, args ...any) (int64, error) {
		return env.Left.QueryInt(ctx, dbtest.EnvDB, q, args...)
	}
	mariaInt := func(ctx context.Context, q string, args ...any) (int64, error) {
		return menv.A.QueryInt(ctx, dbtest.EnvDB, q, args...)
	}
	stages := []mixedStage{
		{"postgres to mariadb", toMaria, "mix_pg", all[:2], pgInt, mariaInt, "$1", "?"},
		{"mariadb to postgres", toPG, "mix_my", all[2:], mariaInt, pgInt, "?", "$1"},
	}
	for _, sg := range stages {
		t.Run(sg.name, func(t *testing.T) {
			var others [][2]string
			before := map[[2]string]string{}
			for _, d := range all {
				if d != sg.broken[0] && d != sg.broken[1] {
					others = append(others, d)
					s.waitState(t, d[0], d[1], "in_sync", detect)
					before[d] = badChecks(s.direction(t, d[0], d[1]).Checks)
				}
			}

			last := sg.copier.pause()
			paused := time.Now()
			resumed := false
			defer func() {
				if !resumed {
					sg.copier.resume()
				}
			}()
			for _, d := range sg.broken {
				s.waitState(t, d[0], d[1], "out_of_sync", detect+3*time.Second)
				if took := time.Since(paused); took > detect+500*time.Millisecond {
					t.Errorf("%s %s: detected after %v, want within max_lag+interval+timeout = %v",
						d[0], d[1], took, detect)
				}
			}
			for _, d := range sg.broken {
				// More rows go missing than the selection holds: those that
				// left it are still reported, found missing on the target
				// and present on the source.
				st := waitMissing(t, s, d, 11, 6*time.Second)
				if st.InSync || !st.Success || !strings.Contains(st.Reason, "not on the target") ||
					st.LagSeconds <= maxLag.Seconds() {
					t.Errorf("%s %s: %+v, want out of sync with a reason", d[0], d[1], st)
				}
				checkMixedMissing(t, sg, d, last, st.MissingIDs)
			}
			for _, d := range others {
				st := s.direction(t, d[0], d[1])
				if after := badChecks(st.Checks); !st.InSync || after != before[d] {
					t.Errorf("%s %s was affected: state %q (%s), out_of_sync/error checks %s -> %s",
						d[0], d[1], st.State, st.Reason, before[d], after)
				}
			}

			sg.copier.resume()
			resumed = true
			for _, d := range sg.broken {
				s.waitState(t, d[0], d[1], "in_sync", detect+5*time.Second)
			}
			if err := sg.copier.failure(); err != nil {
				t.Error(err)
			}
		})
	}
}

// waitMissing waits until direction d reports at least n missing rows and
// returns its status.
func waitMissing(t *testing.T, s *stack, d [2]string, n int, limit time.Duration) server.DirectionStatus {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st := s.direction(t, d[0], d[1])
		if st.RowsMissing >= n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: %d rows missing after %v, want at least %d: %+v",
				d[0], d[1], st.RowsMissing, limit, n, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkMixedMissing checks the missing ids listed for d, oldest first: the
// first is the first row the paused copier did not copy, and they are the
// rows of the source that follow it, none of them on the target.
func checkMixedMissing(t *testing.T, sg mixedStage, d [2]string, last int64, listed []string) {
	t.Helper()
	ctx := t.Context()
	if len(listed) == 0 {
		t.Errorf("%s %s: no missing ids listed", d[0], d[1])
		return
	}
	ids := make([]int64, len(listed))
	for i, s := range listed {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || (i > 0 && id <= ids[i-1]) {
			t.Errorf("%s %s: missing ids %v, want increasing integers", d[0], d[1], listed)
			return
		}
		ids[i] = id
	}
	first, err := sg.source(ctx, "select min(id) from "+sg.table+" where id > "+sg.param, last)
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != first {
		t.Errorf("%s %s: oldest missing id %d, want %d, the first row not copied (missing: %v)",
			d[0], d[1], ids[0], first, listed)
	}
	n, err := sg.source(ctx, fmt.Sprintf("select count(*) from %s where id >= %s and id <= %d",
		sg.table, sg.param, ids[len(ids)-1]), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(ids)) {
		t.Errorf("%s %s: missing ids %v skip some of the %d uncopied rows between them",
			d[0], d[1], listed, n)
	}
	n, err = sg.target(ctx, "select count(*) from "+sg.table+" where id >= "+sg.tgtParam, ids[0])
	if err != nil || n != 0 {
		t.Errorf("%s %s: %d rows from id %d on the target (err %v), want none: the copier is paused",
			d[0], d[1], n, ids[0], err)
	}
}
