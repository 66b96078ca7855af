package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/internal/dbtest"
)

func TestMariaDBHealthyPairInSync(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	mariaWriters(t, env)
	s := startStack(t, mariaConfig(env, "", ""))
	waitMariaInSync(t, s, 15*time.Second)

	ends := map[string][2]string{"left_to_right": {"a", "b"}, "right_to_left": {"b", "a"}}
	for _, dir := range mariaDirections {
		st := s.direction(t, "maria", dir)
		if !st.InSync || !st.Success || st.RowsChecked == 0 || st.LastInSync == nil ||
			st.Error != "" || st.RowsMissing != 0 || st.LagSeconds > maxLag.Seconds() {
			t.Errorf("maria %s: %+v, want in sync after a real check", dir, st)
		}
		if st.Source != ends[dir][0] || st.Target != ends[dir][1] {
			t.Errorf("maria %s: source %q target %q, want %q %q",
				dir, st.Source, st.Target, ends[dir][0], ends[dir][1])
		}
		labels := `direction="` + dir + `",pair="maria",source="` + ends[dir][0] + `"`
		for _, m := range []string{"spengler_replication_in_sync", "spengler_check_success"} {
			if v, ok := s.metric(t, m, labels); !ok || v != "1" {
				t.Errorf("%s{%s} = %q, want 1", m, labels, v)
			}
		}
	}
	for _, db := range []string{"a", "b"} {
		if v, _ := s.metric(t, "spengler_database_up", `database="`+db+`"`); v != "1" {
			t.Errorf("spengler_database_up{database=%q} = %q, want 1", db, v)
		}
	}
}

// mariaBreak is one way to break one direction of the MariaEnv.
type mariaBreak struct {
	name string
	dir  dbtest.Direction
	brk  func(context.Context, dbtest.Direction) error
}

func TestMariaDBBrokenDirectionDetected(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	cases := []mariaBreak{
		{"io/a_to_b", dbtest.AToB, env.BreakIO},
		{"io/b_to_a", dbtest.BToA, env.BreakIO},
		{"sql/a_to_b", dbtest.AToB, env.BreakSQL},
		{"sql/b_to_a", dbtest.BToA, env.BreakSQL},
	}
	mariaWriters(t, env)
	s := startStack(t, mariaConfig(env, "", ""))
	waitMariaInSync(t, s, 15*time.Second)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			dir := mariaDir(tc.dir)
			other := mariaDir(dbtest.AToB + dbtest.BToA - tc.dir)
			s.waitState(t, "maria", other, "in_sync", detect)
			before := badChecks(s.direction(t, "maria", other).Checks)

			if err := tc.brk(ctx, tc.dir); err != nil {
				t.Fatal(err)
			}
			healed := false
			defer func() {
				if !healed {
					env.Heal(context.Background(), tc.dir)
				}
			}()
			// The writer adds a row within 200ms; it cannot arrive.
			took := s.waitState(t, "maria", dir, "out_of_sync", detect+3*time.Second)
			if took > detect+500*time.Millisecond {
				t.Errorf("detected after %v, want within max_lag+interval+timeout = %v", took, detect)
			}
			st := s.direction(t, "maria", dir)
			if st.InSync || !st.Success || st.RowsMissing == 0 || len(st.MissingIDs) == 0 ||
				!strings.Contains(st.Reason, "not on the target") || st.LagSeconds <= maxLag.Seconds() {
				t.Errorf("broken direction: %+v, want missing rows, lag above max_lag and a reason", st)
			}
			// What Spengler calls missing really is: on the source, not on the target.
			if len(st.MissingIDs) > 0 {
				checkMissing(t, env, tc.dir, st.MissingIDs[0])
			}
			if v, _ := s.metric(t, "spengler_replication_rows_missing",
				`direction="`+dir+`",pair="maria"`); v == "0" || v == "" {
				t.Errorf("spengler_replication_rows_missing = %q, want above 0", v)
			}
			ost := s.direction(t, "maria", other)
			if after := badChecks(ost.Checks); !ost.InSync || after != before {
				t.Errorf("maria %s was affected: state %q (%s), out_of_sync/error checks %s -> %s",
					other, ost.State, ost.Reason, before, after)
			}

			if err := env.Heal(ctx, tc.dir); err != nil {
				t.Fatal(err)
			}
			healed = true
			s.waitState(t, "maria", dir, "in_sync", detect+5*time.Second)
			if st := s.direction(t, "maria", dir); st.RowsPending > 20 || st.RowsMissing != 0 {
				t.Errorf("after healing: %d rows pending, %d missing", st.RowsPending, st.RowsMissing)
			}
		})
	}
}

// checkMissing checks that the row with id (a decimal string) of the table of
// d is on the source of d and not on its target.
func checkMissing(t *testing.T, env *dbtest.MariaEnv, d dbtest.Direction, id string) {
	t.Helper()
	n, err := env.Source(d).QueryInt(t.Context(), dbtest.EnvDB,
		"select count(*) from "+env.Table(d)+" where id = ?", id)
	if err != nil || n != 1 {
		t.Errorf("missing id %s: %d rows on the source (err %v), want 1", id, n, err)
	}
	n, err = env.Target(d).QueryInt(t.Context(), dbtest.EnvDB,
		"select count(*) from "+env.Table(d)+" where id = ?", id)
	if err != nil || n != 0 {
		t.Errorf("missing id %s: %d rows on the target (err %v), want 0", id, n, err)
	}
}

func TestMariaDBFrozenServer(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	mariaWriters(t, env)
	s := startStack(t, mariaConfig(env, "", ""))
	waitMariaInSync(t, s, 15*time.Second)

	if err := env.A.Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			env.A.Thaw()
		}
	}()

	// A is the source of left_to_right and the target of right_to_left:
	// both fail. Scrapes meanwhile must not wait for the frozen server.
	deadline := time.Now().Add(detect)
	var slowest time.Duration
	scrapes := 0
	for _, dir := range mariaDirections {
		for {
			_, took := s.get(t, "/metrics")
			scrapes++
			slowest = max(slowest, took)
			if took >= 500*time.Millisecond {
				t.Fatalf("/metrics took %v while a server was frozen, want well under a second", took)
			}
			if s.direction(t, "maria", dir).State == "error" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("maria %s: no error within %v of freezing a", dir, detect)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for range 5 {
		_, took := s.get(t, "/metrics")
		scrapes++
		slowest = max(slowest, took)
		if took >= 500*time.Millisecond {
			t.Fatalf("/metrics took %v while a server was frozen, want well under a second", took)
		}
	}
	t.Logf("%d scrapes while a was frozen, slowest %v", scrapes, slowest)

	for _, dir := range mariaDirections {
		st := s.direction(t, "maria", dir)
		if st.InSync || st.Success || !strings.Contains(st.Error, "timed out") ||
			!strings.Contains(st.Error, `"a"`) || st.Reason == "" {
			t.Errorf("maria %s: %+v, want a timeout on a", dir, st)
		}
		if st.DurationSeconds < timeout.Seconds()*0.9 || st.DurationSeconds > timeout.Seconds()*2 {
			t.Errorf("maria %s: check took %vs, want it cut at the timeout (%v)",
				dir, st.DurationSeconds, timeout)
		}
		labels := `direction="` + dir + `",pair="maria"`
		for metric, want := range map[string]string{
			"spengler_check_success": "0", "spengler_replication_in_sync": "0",
		} {
			if v, _ := s.metric(t, metric, labels); v != want {
				t.Errorf("%s{%s} = %q, want %s", metric, labels, v, want)
			}
		}
	}
	waitMetric(t, s, "spengler_database_up", `database="a"`, "0")
	// The live server holds no statement of Spengler's that outlived its check.
	if list, err := monitorThreads(t.Context(), env.B, timeout+time.Second, false); err != nil ||
		len(list) > 0 {
		t.Errorf("b: statements of the monitor user outlived their check: %s (err %v)",
			describeThreads(list), err)
	}

	if err := env.A.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	// What was sent to a while it was frozen ends within its time limit.
	waitNoMonitorThreads(t, env.A, timeout+time.Second, false, 5*time.Second)
	waitMariaInSync(t, s, 3*detect)
	waitMetric(t, s, "spengler_database_up", `database="a"`, "1")

	// Once Spengler stops, nothing of it is left on either server: no
	// statement, no connection.
	s.engine.Close()
	for _, m := range []*dbtest.MariaDB{env.A, env.B} {
		waitNoMonitorThreads(t, m, 0, true, 5*time.Second)
	}
}

// configError loads text as a configuration file and returns the error, which
// must be there.
func configError(t *testing.T, text string) (string, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "spengler.yml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(file)
	if err == nil {
		t.Fatalf("config loaded, want an error:\n%s\nchecks: %+v", text, c.Checks())
	}
	if _, perr := config.Parse([]byte(text), file); perr == nil || perr.Error() != err.Error() {
		t.Errorf("Parse and Load disagree: %v / %v", perr, err)
	}
	return file, err.Error()
}

func TestMariaDBBadConfig(t *testing.T) {
	const pw = "Cfg-S3cret-pw"
	const head = `
global: {interval: 1s, timeout: 1s, max_lag: 3s}
databases:
  a: {driver: mysql, dsn: "spengler@tcp(127.0.0.1:3306)/app", password: "` + pw + `"}
  b: {driver: mysql, dsn: "mysql://spengler:` + pw + `@127.0.0.1:3307/app"}
  pg: {driver: postgres, dsn: "postgres://spengler@127.0.0.1:5432/app"}
`
	cases := []struct {
		name, text string
		key        string // the line of the error holds this
		want       []string
	}{
		{"dollar for mysql", head + `
pairs:
  - name: maria
    left: a
    right: b
    selector: select id from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = $1
`, "id = $1", []string{"pairs[0].validator:", `validator uses $1 but database "b" is mysql, which takes ?`}},
		{"question mark for postgres", head + `
pairs:
  - name: mixed
    left: a
    right: pg
    directions: [left_to_right]
    selector: select id from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = ?
`, "id = ?", []string{"pairs[0].validator:", `validator uses ? but database "pg" is postgres, which takes $1`}},
		{"dollar in a direction block", head + `
pairs:
  - name: maria
    left: a
    right: b
    selector: select id from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = ?
    right_to_left:
      validator: select count(*) from b_rows where id = $1
`, "b_rows where id = $1", []string{"pairs[0].right_to_left.validator:", `uses $1 but database "a" is mysql`}},
		{"unknown database", head + `
pairs:
  - name: maria
    left: a
    right: bb
    selector: select id from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = ?
`, "right: bb", []string{"pairs[0].right:", `unknown database "bb" (defined: a, b, pg)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file, msg := configError(t, tc.text)
			t.Logf("error: %s", msg)
			line := lineOf(tc.text, tc.key)
			want := append([]string{file + ":" + strconv.Itoa(line) + ": "}, tc.want...)
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if strings.Contains(msg, pw) {
				t.Errorf("error %q shows the password", msg)
			}
		})
	}

	// DSNs that do not parse: the error names the key, says why, and shows
	// neither the DSN nor its password.
	dsns := []struct{ name, dsn, why string }{
		{"driver form", "spengler:" + pw + "@tcp(127.0.0.1:3306/app", "cannot parse dsn"},
		{"url with a path", "mysql://spengler:" + pw + "@127.0.0.1:3306/app/extra",
			"the path must be one database name"},
		{"url with a bad escape", "mysql://spengler:" + pw + "%zz@127.0.0.1:3306/app",
			"invalid percent-encoding"},
	}
	for _, tc := range dsns {
		t.Run("dsn/"+tc.name, func(t *testing.T) {
			text := `
databases:
  a: {driver: mysql, dsn: "spengler@tcp(127.0.0.1:3306)/app"}
  bad:
    driver: mysql
    dsn: "` + tc.dsn + `"
pairs:
  - name: p
    left: a
    right: bad
    selector: select id from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = ?
`
			file, msg := configError(t, text)
			t.Logf("error: %s", msg)
			line := strconv.Itoa(lineOf(text, "dsn: \""+tc.dsn))
			for _, w := range []string{file + ":" + line + ": ", "databases.bad.dsn: ", tc.why} {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if strings.Contains(msg, pw) || strings.Contains(msg, "127.0.0.1") {
				t.Errorf("error %q shows the DSN or its password", msg)
			}
		})
	}
}

// lineOf returns the 1-based number of the first line of text that contains
// substr, 0 when none does.
func lineOf(text, substr string) int {
	for i, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			return i + 1
		}
	}
	return 0
}

func TestMariaDBAccessDenied(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	const wrong = "Wr0ng-Maria-pw"
	rowWriter(t, env.A, dbtest.TableA)
	s := startStack(t, mariaConfig(env,
		`  denied: {driver: mysql, dsn: "`+dbtest.MariaMonitorUser+`@tcp(`+env.A.Addr()+`)/app", password: "`+wrong+`"}`,
		`
  - name: denied
    left: denied
    right: b
    directions: [left_to_right]
    selector: select id from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = ?
`))
	s.waitState(t, "denied", "left_to_right", "error", detect)
	st := s.direction(t, "denied", "left_to_right")
	if st.InSync || st.Success || !strings.Contains(st.Error, "Access denied") ||
		!strings.Contains(st.Error, `source "denied"`) {
		t.Errorf("wrong password: %+v, want the server's refusal on the source", st)
	}
	waitMetric(t, s, "spengler_database_up", `database="denied"`, "0")
	// The good pair on the same server is not affected.
	s.waitState(t, "maria", "left_to_right", "in_sync", 10*time.Second)
	if v, _ := s.metric(t, "spengler_database_up", `database="a"`); v != "1" {
		t.Errorf("spengler_database_up{database=\"a\"} = %q, want 1", v)
	}
	for _, where := range shown(t, s, wrong, dbtest.MariaMonitorPassword) {
		t.Error(where)
	}
}
