package e2e

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/internal/dbtest"
)

// goroutineSlack is how many more goroutines than before a test may leave
// behind: the runtime and the test framework start a few of their own.
const goroutineSlack = 5

// checkGoroutines fails t when, once everything the test set up later has
// been cleaned up, more goroutines run than when it was called. Call it
// before starting anything the test cleans up.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before+goroutineSlack {
				return
			}
			if time.Now().After(deadline) {
				var buf bytes.Buffer
				_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
				t.Errorf("%d goroutines after the test, %d before: leaked\n%s", n, before, buf.String())
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// pairLog records the results of one pair as the engine publishes them, so
// that a test sees every check, also one whose state lasts a single interval.
type pairLog struct {
	mu      sync.Mutex
	list    []*collector.Result
	changed chan struct{} // closed and replaced when a result comes
}

// watchPair records the results of pair from now until the test ends.
func watchPair(t *testing.T, s *stack, pair string) *pairLog {
	t.Helper()
	l := &pairLog{changed: make(chan struct{})}
	t.Cleanup(s.engine.SubscribePair(pair, func(r *collector.Result) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.list = append(l.list, r)
		close(l.changed)
		l.changed = make(chan struct{})
	}))
	return l
}

// mark returns the position of the next result, for wait.
func (l *pairLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.list)
}

// wait returns the first result of direction dir at or after position from
// that ok accepts, and the position after it. It fails t when none comes
// within limit.
func (l *pairLog) wait(t *testing.T, from int, dir string, limit time.Duration,
	ok func(*collector.Result) bool) (*collector.Result, int) {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	start := from
	for {
		l.mu.Lock()
		for i := from; i < len(l.list); i++ {
			if r := l.list[i]; r.Direction == dir && ok(r) {
				l.mu.Unlock()
				return r, i + 1
			}
		}
		from = max(from, len(l.list))
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("no matching result of %s within %v; results since: %s", dir, limit, l.since(start))
			return nil, 0
		}
	}
}

// next returns the first result of direction dir at or after position from.
func (l *pairLog) next(t *testing.T, from int, dir string, limit time.Duration) (*collector.Result, int) {
	t.Helper()
	return l.wait(t, from, dir, limit, func(*collector.Result) bool { return true })
}

// since describes the results from position from on, for failure messages.
func (l *pairLog) since(from int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for _, r := range l.list[min(from, len(l.list)):] {
		parts = append(parts, fmt.Sprintf("%s %s %q", r.Direction, r.State, r.Reason))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// isState returns a matcher of results in state.
func isState(state collector.State) func(*collector.Result) bool {
	return func(r *collector.Result) bool { return r.State == state }
}

// bothDirections are the directions of a two-way pair.
var bothDirections = []string{"left_to_right", "right_to_left"}

// waitInSync waits until every direction of dirs (pair name, direction) is
// in sync.
func waitInSync(t *testing.T, s *stack, dirs [][2]string, limit time.Duration) {
	t.Helper()
	for _, d := range dirs {
		s.waitState(t, d[0], d[1], "in_sync", limit)
	}
}

// pairDirs lists both directions of pair.
func pairDirs(pair string) [][2]string {
	return [][2]string{{pair, "left_to_right"}, {pair, "right_to_left"}}
}

// badCounts returns the out-of-sync and error counts of every direction.
func badCounts(t *testing.T, s *stack, dirs [][2]string) map[[2]string]string {
	t.Helper()
	out := make(map[[2]string]string, len(dirs))
	for _, d := range dirs {
		out[d] = badChecks(s.direction(t, d[0], d[1]).Checks)
	}
	return out
}

// checkUnaffected fails t unless every direction in before is in sync and
// has had no out-of-sync or failed check since before was taken.
func checkUnaffected(t *testing.T, s *stack, before map[[2]string]string) {
	t.Helper()
	for d, counts := range before {
		st := s.direction(t, d[0], d[1])
		if after := badChecks(st.Checks); !st.InSync || after != counts {
			t.Errorf("%s %s was affected: state %q (%s), out_of_sync/error checks %s -> %s",
				d[0], d[1], st.State, st.Reason, counts, after)
		}
	}
}

// checkNotInSync fails t unless /metrics says the directions of pair are
// neither in sync nor checked successfully.
func checkNotInSync(t *testing.T, s *stack, pair string, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		labels := `direction="` + dir + `",pair="` + pair + `"`
		for _, m := range []string{"spengler_replication_in_sync", "spengler_check_success"} {
			if v, _ := s.metric(t, m, labels); v != "0" {
				t.Errorf("%s{%s} = %q, want 0", m, labels, v)
			}
		}
	}
}

// pgSeriesPair is a two-way pair whose selector and validator need no table:
// ids 1 to 5 are on both sides. Each selector run also calls extra (such as
// pg_sleep(0.3)), so that a check spends time on the server.
func pgSeriesPair(name, left, right, extra string) string {
	return fmt.Sprintf(`
  - name: %s
    left: %s
    right: %s
    selector: select g as id from generate_series(1, 5) g, %s order by g desc
    validator: select count(*) from generate_series(1, 5) g where g = $1
`, name, left, right, extra)
}

// mariaSeriesPair is pgSeriesPair for MariaDB, whose sequence engine gives
// the ids; each selector run also sleeps for sleep seconds.
func mariaSeriesPair(name, left, right, sleep string) string {
	return fmt.Sprintf(`
  - name: %s
    left: %s
    right: %s
    selector: select seq as id from seq_1_to_5, (select sleep(%s) as z) s order by seq desc
    validator: select count(*) from seq_1_to_5 where seq = ?
`, name, left, right, sleep)
}

// pgSpengler counts the backends of Spengler on p that match cond (SQL on
// pg_stat_activity, "true" for all).
func pgSpengler(ctx context.Context, p *dbtest.PG, cond string) (int64, error) {
	return p.QueryInt(ctx, "postgres", "select count(*) from pg_stat_activity "+
		"where application_name = 'spengler' and pid <> pg_backend_pid() and ("+cond+")")
}

// waitPGSpengler waits until Spengler has want backends on p that match cond.
func waitPGSpengler(t *testing.T, p *dbtest.PG, cond string, want int64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		n, err := pgSpengler(t.Context(), p, cond)
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d backends of Spengler where %s (err %v), want %d", p.Name, n, cond, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPGBusy waits until a backend of Spengler on p runs a statement holding
// match.
func waitPGBusy(t *testing.T, p *dbtest.PG, match string) {
	t.Helper()
	deadline := time.Now().Add(detect)
	for {
		n, err := pgSpengler(t.Context(), p, "state = 'active' and query like '%"+match+"%'")
		if err == nil && n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no statement of Spengler's holding %q ran within %v (err %v)",
				p.Name, match, detect, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mariaBusy returns the id of a connection on m that runs a statement of
// user holding match, waiting for one.
func mariaBusy(t *testing.T, m *dbtest.MariaDB, user, match string) int64 {
	t.Helper()
	deadline := time.Now().Add(detect)
	for {
		list, err := m.ProcessList(t.Context())
		for _, p := range list {
			if p.User == user && p.Command != "Sleep" && strings.Contains(p.Info, match) {
				return p.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no statement of %s holding %q ran within %v (err %v)",
				m.Name, user, match, detect, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitNoMariaUser waits until m has no connection of user.
func waitNoMariaUser(t *testing.T, m *dbtest.MariaDB, user string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := m.ProcessList(t.Context())
		var left []dbtest.MariaProcess
		for _, p := range list {
			if p.User == user {
				left = append(left, p)
			}
		}
		if err == nil && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: connections of %s still there: %s (err %v)", m.Name, user,
				describeThreads(left), err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ownPG starts a PostgreSQL server of the test's own, which it may break.
func ownPG(t *testing.T, name string) *dbtest.PG {
	t.Helper()
	p, err := dbtest.StartPG(t.Context(), name, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Account of Spengler on the MariaDB servers of a test's own.
const ownMariaUser, ownMariaPassword = "spengler", "Own-maria-pw-5"

// ownMariaDB starts a MariaDB server of the test's own, which it may break,
// with database app and the account ownMariaUser.
func ownMariaDB(t *testing.T, name string, serverID int) *dbtest.MariaDB {
	t.Helper()
	m, err := dbtest.StartMariaDB(t.Context(), name, t.TempDir(), serverID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	err = m.Exec(t.Context(), fmt.Sprintf("create database app; "+
		"create user %s@'%%' identified by '%s'; grant select on app.* to %s@'%%'",
		ownMariaUser, ownMariaPassword, ownMariaUser))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestKilledPostgresServerRecovers(t *testing.T) {
	env := dbtest.SharedEnv(t)
	checkGoroutines(t)
	victim := ownPG(t, "victim")
	writers(t, env)
	s := startStack(t, envConfig(env,
		`  victim: {driver: postgres, dsn: "`+victim.DSN("postgres")+`"}`,
		pgSeriesPair("crash", "victim", "left", "pg_sleep(0.3)")))
	log := watchPair(t, s, "crash")
	waitInSync(t, s, append(pairDirs("crash"), allDirections...), 10*time.Second)
	before := badCounts(t, s, allDirections)

	// Die in the middle of a check: while the selector sleeps on the server.
	waitPGBusy(t, victim, "pg_sleep(0.3)")
	from := log.mark()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	sides := map[string]string{"left_to_right": `source "victim"`, "right_to_left": `target "victim"`}
	for dir, side := range sides {
		r, _ := log.wait(t, from, dir, detect, isState(collector.StateError))
		if r.InSync || r.Success || !strings.Contains(r.Error, side) || r.Reason == "" {
			t.Errorf("crash %s with its server killed: %+v, want an error on the %s", dir, r, side)
		}
	}
	waitMetric(t, s, "spengler_database_up", `database="victim"`, "0")
	// Down for a while, it stays reported, every check.
	time.Sleep(2 * interval)
	for dir, side := range sides {
		st := s.direction(t, "crash", dir)
		if st.InSync || st.State != "error" || !strings.Contains(st.Reason, side) {
			t.Errorf("crash %s with its server down: %+v, want an error on the %s", dir, st, side)
		}
	}
	checkNotInSync(t, s, "crash", bothDirections...)
	if v, _ := s.metric(t, "spengler_database_up", `database="left"`); v != "1" {
		t.Errorf("spengler_database_up{database=\"left\"} = %q, want 1", v)
	}
	checkUnaffected(t, s, before)

	// Back again: Spengler recovers by itself.
	if err := victim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitInSync(t, s, pairDirs("crash"), 3*detect)
	waitMetric(t, s, "spengler_database_up", `database="victim"`, "1")
	checkUnaffected(t, s, before)

	// Nothing of Spengler's is left on the servers once it stops.
	s.engine.Close()
	for _, p := range []*dbtest.PG{victim, env.Left} {
		waitPGSpengler(t, p, "true", 0, 5*time.Second)
	}
}

func TestKilledMariaDBServerRecovers(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	checkGoroutines(t)
	victim := ownMariaDB(t, "victim", 11)
	mariaWriters(t, env)
	s := startStack(t, mariaConfig(env,
		`  victim: {driver: mysql, dsn: "`+victim.DSN(ownMariaUser, ownMariaPassword, "app")+`"}`,
		mariaSeriesPair("crash", "victim", "a", "0.3")))
	log := watchPair(t, s, "crash")
	maria := pairDirs("maria")
	waitInSync(t, s, append(pairDirs("crash"), maria...), 15*time.Second)
	before := badCounts(t, s, maria)

	mariaBusy(t, victim, ownMariaUser, "sleep(0.3)")
	from := log.mark()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	sides := map[string]string{"left_to_right": `source "victim"`, "right_to_left": `target "victim"`}
	for dir, side := range sides {
		r, _ := log.wait(t, from, dir, detect, isState(collector.StateError))
		if r.InSync || r.Success || !strings.Contains(r.Error, side) || r.Reason == "" {
			t.Errorf("crash %s with its server killed: %+v, want an error on the %s", dir, r, side)
		}
	}
	waitMetric(t, s, "spengler_database_up", `database="victim"`, "0")
	time.Sleep(2 * interval)
	for dir, side := range sides {
		st := s.direction(t, "crash", dir)
		if st.InSync || st.State != "error" || !strings.Contains(st.Reason, side) {
			t.Errorf("crash %s with its server down: %+v, want an error on the %s", dir, st, side)
		}
	}
	checkNotInSync(t, s, "crash", bothDirections...)
	if v, _ := s.metric(t, "spengler_database_up", `database="a"`); v != "1" {
		t.Errorf("spengler_database_up{database=\"a\"} = %q, want 1", v)
	}
	checkUnaffected(t, s, before)

	if err := victim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitInSync(t, s, pairDirs("crash"), 3*detect)
	waitMetric(t, s, "spengler_database_up", `database="victim"`, "1")
	checkUnaffected(t, s, before)

	s.engine.Close()
	waitNoMariaUser(t, victim, ownMariaUser)
	waitNoMonitorThreads(t, env.A, 0, true, 5*time.Second)
}

func TestTerminatedPostgresBackends(t *testing.T) {
	env := dbtest.SharedEnv(t)
	checkGoroutines(t)
	writers(t, env)
	// Pools of their own, on database postgres of the logical servers, so
	// that their backends can be told apart from those of the other pairs.
	s := startStack(t, envConfig(env, fmt.Sprintf(`
  left_pg: {driver: postgres, dsn: "%s"}
  right_pg: {driver: postgres, dsn: "%s"}
`, env.Left.DSN("postgres"), env.Right.DSN("postgres")),
		pgSeriesPair("dropped", "left_pg", "right_pg", "pg_sleep(0.3)")))
	log := watchPair(t, s, "dropped")
	waitInSync(t, s, append(pairDirs("dropped"), allDirections...), 10*time.Second)
	before := badCounts(t, s, allDirections)

	// Drop the connection that runs the selector, mid-check. The driver may
	// send the request once more on a new connection; either way the check
	// ends, and what it says is true.
	const running = "application_name = 'spengler' and datname = 'postgres' and " +
		"state = 'active' and query like '%pg_sleep(0.3)%'"
	terminate := func() int64 {
		n, err := env.Left.QueryInt(t.Context(), "postgres",
			"select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity "+
				"where "+running+") t")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	from := log.mark()
	for range 20 {
		waitPGBusy(t, env.Left, "pg_sleep(0.3)")
		if terminate() > 0 {
			break
		}
	}
	r, next := log.next(t, from, "left_to_right", detect)
	switch {
	case r.State == collector.StateError:
		if !strings.Contains(r.Error, `source "left_pg"`) || !strings.Contains(r.Error, "terminating connection") {
			t.Errorf("check whose connection was terminated: %+v, want the server's reason", r)
		}
	case r.State != collector.StateInSync:
		t.Errorf("check whose connection was terminated: %s %q, want an error or a retry in sync",
			r.State, r.Reason)
	}
	t.Logf("check whose connection was terminated once: %s %q", r.State, r.Error)
	if r, _ := log.next(t, next, "left_to_right", detect); r.State != collector.StateInSync {
		t.Errorf("check after the terminated one: %s %q, want in sync", r.State, r.Reason)
	}

	// Drop it again every time the selector runs, a retry too: the check
	// reports why, and the first check after that works.
	from = log.mark()
	stop := time.Now().Add(2 * interval)
	for time.Now().Before(stop) {
		terminate()
		time.Sleep(10 * time.Millisecond)
	}
	r, next = log.wait(t, from, "left_to_right", detect, isState(collector.StateError))
	if r.InSync || !strings.Contains(r.Error, `source "left_pg"`) ||
		!strings.Contains(r.Error, "terminating connection") {
		t.Errorf("check whose connections were terminated: %+v, want the server's reason", r)
	}
	r, _ = log.wait(t, next, "left_to_right", 2*detect, func(r *collector.Result) bool {
		return r.LastCheck.After(stop)
	})
	if r.State != collector.StateInSync {
		t.Errorf("first check after the terminations: %s %q, want in sync", r.State, r.Reason)
	}
	checkUnaffected(t, s, before)

	// Drop every idle connection of Spengler's, as a server restart behind a
	// pooler or idle_session_timeout would: the pools recover by themselves.
	for _, p := range []*dbtest.PG{env.Left, env.Right} {
		if err := p.Exec(t.Context(), "select pg_terminate_backend(pid) from pg_stat_activity "+
			"where application_name = 'spengler' and state = 'idle'"); err != nil {
			t.Fatal(err)
		}
	}
	from = log.mark()
	for _, dir := range bothDirections {
		log.wait(t, from, dir, 3*interval+timeout, isState(collector.StateInSync))
	}
	// A request that finds its idle connection gone is sent again on a new
	// one: the other pairs do not even notice.
	checkUnaffected(t, s, before)

	s.engine.Close()
	for _, p := range []*dbtest.PG{env.Left, env.Right} {
		waitPGSpengler(t, p, "true", 0, 5*time.Second)
	}
}

func TestKilledMariaDBConnections(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	checkGoroutines(t)
	mariaWriters(t, env)
	s := startStack(t, mariaConfig(env, "", mariaSeriesPair("dropped", "a", "b", "0.3")))
	log := watchPair(t, s, "dropped")
	maria := pairDirs("maria")
	waitInSync(t, s, append(pairDirs("dropped"), maria...), 15*time.Second)
	before := badCounts(t, s, maria)

	// KILL the connection that runs the selector, mid-check.
	from := log.mark()
	id := mariaBusy(t, env.A, dbtest.MariaMonitorUser, "sleep(0.3)")
	if err := env.A.Exec(t.Context(), "kill connection "+strconv.FormatInt(id, 10)); err != nil {
		t.Fatal(err)
	}
	r, next := log.wait(t, from, "left_to_right", detect, isState(collector.StateError))
	if r.InSync || !strings.Contains(r.Error, `source "a"`) {
		t.Errorf("check whose connection was killed: %+v, want an error on the source", r)
	}
	t.Logf("error of the killed check: %s", r.Error)
	if r, _ := log.next(t, next, "left_to_right", detect); r.State != collector.StateInSync {
		t.Errorf("check after the killed one: %s %q, want in sync", r.State, r.Reason)
	}
	checkUnaffected(t, s, before)

	// KILL every idle connection of Spengler's: the pools recover by themselves.
	for _, m := range []*dbtest.MariaDB{env.A, env.B} {
		list, err := monitorThreads(t.Context(), m, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list {
			if p.Command == "Sleep" {
				_ = m.Exec(t.Context(), "kill connection "+strconv.FormatInt(p.ID, 10))
			}
		}
	}
	from = log.mark()
	for _, dir := range bothDirections {
		log.wait(t, from, dir, 3*interval+timeout, isState(collector.StateInSync))
	}
	checkUnaffected(t, s, before)

	s.engine.Close()
	for _, m := range []*dbtest.MariaDB{env.A, env.B} {
		waitNoMonitorThreads(t, m, 0, true, 5*time.Second)
	}
}

// blackholeCase is a pair whose right side is reached through a proxy.
type blackholeCase struct {
	stack  *stack
	proxy  *dbtest.Proxy
	direct string      // the database reached directly on the proxied server
	others [][2]string // directions not using the proxy
}

// checkBlackhole black-holes the proxy of pair proxied (right: database
// via) and checks what Spengler reports, then resumes forwarding and checks
// that it recovers.
func checkBlackhole(t *testing.T, c blackholeCase) {
	t.Helper()
	s := c.stack
	waitInSync(t, s, append(pairDirs("proxied"), c.others...), 15*time.Second)
	before := badCounts(t, s, c.others)

	c.proxy.Blackhole(true)
	resumed := false
	defer func() {
		if !resumed {
			c.proxy.Blackhole(false)
		}
	}()
	deadline := time.Now().Add(detect)
	for _, dir := range bothDirections {
		for {
			// A scrape never waits for a database.
			if _, took := s.get(t, "/metrics"); took >= timeout {
				t.Fatalf("/metrics took %v while a network path was down, want under %v", took, timeout)
			}
			if s.direction(t, "proxied", dir).State == "error" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("proxied %s: no error within %v of the network path going down", dir, detect)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, dir := range bothDirections {
		st := s.direction(t, "proxied", dir)
		if st.InSync || st.Success || !strings.Contains(st.Error, "timed out") ||
			!strings.Contains(st.Error, `"via"`) {
			t.Errorf("proxied %s: %+v, want a timeout on via", dir, st)
		}
		if st.DurationSeconds < timeout.Seconds()*0.9 || st.DurationSeconds > timeout.Seconds()*2 {
			t.Errorf("proxied %s: check took %vs, want it cut at the timeout (%v)",
				dir, st.DurationSeconds, timeout)
		}
	}
	checkNotInSync(t, s, "proxied", bothDirections...)
	waitMetric(t, s, "spengler_database_up", `database="via"`, "0")
	if v, _ := s.metric(t, "spengler_database_up", `database="`+c.direct+`"`); v != "1" {
		t.Errorf("spengler_database_up{database=%q} = %q, want 1: the server itself answers", c.direct, v)
	}
	// Rows written meanwhile cannot be seen on the target: the lag grows.
	lag1 := s.direction(t, "proxied", "left_to_right").LagSeconds
	time.Sleep(2 * interval)
	if lag2 := s.direction(t, "proxied", "left_to_right").LagSeconds; lag2 <= lag1 {
		t.Errorf("proxied left_to_right: lag %v then %v while the target is cut off, want growing",
			lag1, lag2)
	}
	checkUnaffected(t, s, before)

	c.proxy.Blackhole(false)
	resumed = true
	waitInSync(t, s, pairDirs("proxied"), 3*detect)
	waitMetric(t, s, "spengler_database_up", `database="via"`, "1")
	checkUnaffected(t, s, before)
	s.engine.Close()
}

func TestBlackholedPathPostgres(t *testing.T) {
	env := dbtest.SharedEnv(t)
	checkGoroutines(t)
	proxy, err := dbtest.NewProxy(fmt.Sprintf("127.0.0.1:%d", env.Right.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	writers(t, env)
	s := startStack(t, envConfig(env,
		`  via: {driver: postgres, dsn: "`+env.Right.DSNVia(proxy, dbtest.EnvDB)+`"}`, `
  - name: proxied
    left: left
    right: via
    left_to_right:
      selector: select id, created_at as ts from a_rows order by id desc limit 20
      validator: select count(*) from a_rows where id = $1
    right_to_left:
      selector: select id, created_at as ts from b_rows order by id desc limit 20
      validator: select count(*) from b_rows where id = $1
`))
	checkBlackhole(t, blackholeCase{stack: s, proxy: proxy, direct: "right", others: allDirections})
	for _, p := range []*dbtest.PG{env.Left, env.Right} {
		waitPGSpengler(t, p, "true", 0, 5*time.Second)
	}
}

func TestBlackholedPathMariaDB(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	checkGoroutines(t)
	proxy, err := dbtest.NewProxy(env.B.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	mariaWriters(t, env)
	via := env.B.DSNVia(proxy, dbtest.MariaMonitorUser, dbtest.MariaMonitorPassword, dbtest.EnvDB)
	s := startStack(t, mariaConfig(env, `  via: {driver: mysql, dsn: "`+via+`"}`, `
  - name: proxied
    left: a
    right: via
    left_to_right:
      selector: select id, created_at as ts from a_rows order by id desc limit 20
      validator: select count(*) from a_rows where id = ?
    right_to_left:
      selector: select id, created_at as ts from b_rows order by id desc limit 20
      validator: select count(*) from b_rows where id = ?
`))
	checkBlackhole(t, blackholeCase{stack: s, proxy: proxy, direct: "b", others: pairDirs("maria")})
	for _, m := range []*dbtest.MariaDB{env.A, env.B} {
		waitNoMonitorThreads(t, m, 0, true, 5*time.Second)
	}
}

// slowPairs are two pairs with a timeout (and interval) of their own whose
// selectors take 0.8 and 1.2 times that timeout on the server.
func slowPairs(selector8, selector12, validator string) string {
	return fmt.Sprintf(`
  - name: near
    left: left
    right: right
    directions: [left_to_right]
    interval: %[4]s
    timeout: %[4]s
    selector: %[1]s
    validator: %[3]s
  - name: over
    left: left
    right: right
    directions: [left_to_right]
    interval: %[4]s
    timeout: %[4]s
    selector: %[2]s
    validator: %[3]s
`, selector8, selector12, validator, slowTimeout)
}

// slowTimeout is the timeout of slowPairs, long enough that 0.2 of it covers
// the rest of a check on a busy machine.
const slowTimeout = 2 * time.Second

// checkSlowPairs checks the pairs of slowPairs: near succeeds every time;
// over fails at the timeout, with the reason; the other directions, on the
// same databases, go on unaffected.
func checkSlowPairs(t *testing.T, s *stack, others [][2]string) {
	t.Helper()
	near, over := watchPair(t, s, "near"), watchPair(t, s, "over")
	waitInSync(t, s, others, 15*time.Second)
	before := badCounts(t, s, others)
	from := 0
	for range 3 {
		var r *collector.Result
		r, from = near.next(t, from, "left_to_right", 2*slowTimeout+interval)
		if r.State != collector.StateInSync || r.Duration < slowTimeout*7/10 {
			t.Errorf("selector taking 0.8 of the timeout: %s %q after %v, want in sync",
				r.State, r.Reason, r.Duration)
		}
	}
	r, _ := over.next(t, 0, "left_to_right", 2*slowTimeout+interval)
	if r.State != collector.StateError || r.InSync ||
		!(strings.Contains(r.Error, "timed out") || strings.Contains(r.Error, "statement timeout")) {
		t.Errorf("selector taking 1.2 of the timeout: %s %q, want a timeout", r.State, r.Error)
	}
	if r.Duration < slowTimeout*9/10 || r.Duration > slowTimeout*3/2 {
		t.Errorf("selector taking 1.2 of the timeout: check took %v, want it cut at %v",
			r.Duration, slowTimeout)
	}
	checkNotInSync(t, s, "over", "left_to_right")
	checkUnaffected(t, s, before)
}

func TestSlowQueriesNearTimeoutPostgres(t *testing.T) {
	env := dbtest.SharedEnv(t)
	checkGoroutines(t)
	writers(t, env)
	sel := func(secs string) string {
		return "select id, created_at as ts from a_rows, pg_sleep(" + secs + ") order by id desc limit 5"
	}
	s := startStack(t, envConfig(env, "",
		slowPairs(sel("1.6"), sel("2.4"), "select count(*) from a_rows where id = $1")))
	checkSlowPairs(t, s, allDirections)
	// Nothing runs on the server past its check's timeout.
	cond := fmt.Sprintf("state <> 'idle' and query like '%%pg_sleep(2.4)%%' and "+
		"now() - query_start > interval '%d milliseconds'", (slowTimeout + 500*time.Millisecond).Milliseconds())
	for range 10 {
		if n, err := pgSpengler(t.Context(), env.Left, cond); err != nil || n != 0 {
			t.Fatalf("%d statements of Spengler's outlived their check (err %v)", n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.engine.Close()
	waitPGSpengler(t, env.Left, "true", 0, 5*time.Second)
}

func TestSlowQueriesNearTimeoutMariaDB(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	checkGoroutines(t)
	mariaWriters(t, env)
	sel := func(secs string) string {
		return "select id, created_at as ts from a_rows, (select sleep(" + secs +
			") as z) s order by id desc limit 5"
	}
	cfg := strings.ReplaceAll(slowPairs(sel("1.6"), sel("2.4"),
		"select count(*) from a_rows where id = ?"), "left: left\n", "left: a\n")
	cfg = strings.ReplaceAll(cfg, "right: right\n", "right: b\n")
	s := startStack(t, mariaConfig(env, "", cfg))
	checkSlowPairs(t, s, pairDirs("maria"))
	for range 10 {
		list, err := monitorThreads(t.Context(), env.A, slowTimeout+time.Second, false)
		if err != nil || len(list) > 0 {
			t.Fatalf("statements of Spengler's outlived their check: %s (err %v)",
				describeThreads(list), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.engine.Close()
	waitNoMonitorThreads(t, env.A, 0, true, 5*time.Second)
}
