package dbtest_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

func TestMain(m *testing.M) {
	os.Exit(dbtest.Main(m))
}

// arrivalTimeout bounds the wait for a replicated row.
const arrivalTimeout = 20 * time.Second

// absentFor is how long a row must stay away from a broken replica.
const absentFor = 2 * time.Second

// waitRow fails t unless the row with id appears in table on p in time.
func waitRow(t *testing.T, p *dbtest.PG, table string, id int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), arrivalTimeout)
	defer cancel()
	start := time.Now()
	if err := p.WaitRow(ctx, dbtest.EnvDB, table, id); err != nil {
		t.Fatalf("row %d of %s did not reach %s: %v", id, table, p.Name, err)
	}
	t.Logf("row %d of %s reached %s after %s", id, table, p.Name,
		time.Since(start).Round(time.Millisecond))
}

// assertAbsent fails t if the row with id appears in table on p within absentFor.
func assertAbsent(t *testing.T, p *dbtest.PG, table string, id int64) {
	t.Helper()
	deadline := time.Now().Add(absentFor)
	for time.Now().Before(deadline) {
		ok, err := p.HasRow(t.Context(), dbtest.EnvDB, table, id)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Fatalf("row %d of %s reached %s although replication is broken", id, table, p.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// insert inserts one row into table on p and returns its id.
func insert(t *testing.T, p *dbtest.PG, table string) int64 {
	t.Helper()
	id, err := p.InsertRows(t.Context(), dbtest.EnvDB, table, 1)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestPostgresBinDirOverride(t *testing.T) {
	t.Setenv("SPENGLER_PG_BINDIR", t.TempDir())
	_, err := dbtest.PostgresBinDir()
	if !errors.Is(err, dbtest.ErrNotInstalled) {
		t.Fatalf("PostgresBinDir with an empty override: got %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "postgresql") {
		t.Errorf("error %q does not name the package to install", err)
	}
}

func TestRequireDB(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the binary checks always report a skip")
	}
	for _, tc := range []struct {
		value string
		want  bool
	}{{"", false}, {"0", false}, {"1", true}} {
		t.Setenv("SPENGLER_REQUIRE_DB", tc.value)
		if got := dbtest.RequireDB(); got != tc.want {
			t.Errorf("RequireDB with %q = %v, want %v", tc.value, got, tc.want)
		}
	}
}

func TestEnvLogicalBothWays(t *testing.T) {
	env := dbtest.SharedEnv(t)
	waitRow(t, env.Right, dbtest.TableA, insert(t, env.Left, dbtest.TableA))
	id := insert(t, env.Right, dbtest.TableB)
	if id < dbtest.BRowsStart {
		t.Errorf("b_rows id %d below %d", id, dbtest.BRowsStart)
	}
	waitRow(t, env.Left, dbtest.TableB, id)
	if err := env.Logical.InsertA(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	if err := env.Logical.InsertB(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
}

func TestEnvStreaming(t *testing.T) {
	env := dbtest.SharedEnv(t)
	waitRow(t, env.Standby, dbtest.StreamTable, insert(t, env.Primary, dbtest.StreamTable))
}

// TestEnvRestart stops Right and starts it again: replication in both directions
// resumes. It runs before the parallel tests, which need Right running.
func TestEnvRestart(t *testing.T) {
	env := dbtest.SharedEnv(t)
	ctx := t.Context()
	port, pid := env.Right.Port, env.Right.PID()
	if err := env.Right.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := env.Right.PID(); got != 0 {
		t.Errorf("PID of stopped server = %d, want 0", got)
	}
	if _, err := env.Right.QueryInt(ctx, "postgres", "select 1"); err == nil {
		t.Error("query on stopped server succeeded")
	}
	idA := insert(t, env.Left, dbtest.TableA)
	if err := env.Right.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if env.Right.Port != port || env.Right.PID() == pid || env.Right.PID() == 0 {
		t.Errorf("after restart port %d pid %d, before port %d pid %d",
			env.Right.Port, env.Right.PID(), port, pid)
	}
	waitRow(t, env.Right, dbtest.TableA, idA)
	waitRow(t, env.Left, dbtest.TableB, insert(t, env.Right, dbtest.TableB))
}

func TestLogicalBreakHealAToB(t *testing.T) {
	t.Parallel()
	env := dbtest.SharedEnv(t)
	l := env.Logical
	t.Cleanup(func() {
		if err := l.HealAToB(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if err := l.BreakAToB(t.Context()); err != nil {
		t.Fatal(err)
	}
	id := insert(t, env.Left, dbtest.TableA)
	assertAbsent(t, env.Right, dbtest.TableA, id)
	if err := l.HealAToB(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitRow(t, env.Right, dbtest.TableA, id)
}

func TestLogicalBreakHealBToA(t *testing.T) {
	t.Parallel()
	env := dbtest.SharedEnv(t)
	l := env.Logical
	t.Cleanup(func() {
		if err := l.HealBToA(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if err := l.BreakBToA(t.Context()); err != nil {
		t.Fatal(err)
	}
	id := insert(t, env.Right, dbtest.TableB)
	assertAbsent(t, env.Left, dbtest.TableB, id)
	if err := l.HealBToA(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitRow(t, env.Left, dbtest.TableB, id)
}

func TestStandbyPauseResume(t *testing.T) {
	t.Parallel()
	env := dbtest.SharedEnv(t)
	t.Cleanup(func() {
		if err := env.Standby.ResumeReplay(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if err := env.Standby.PauseReplay(t.Context()); err != nil {
		t.Fatal(err)
	}
	id := insert(t, env.Primary, dbtest.StreamTable)
	assertAbsent(t, env.Standby, dbtest.StreamTable, id)
	if err := env.Standby.ResumeReplay(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitRow(t, env.Standby, dbtest.StreamTable, id)
}

// processState returns the state letter of pid from /proc, or "" when it is gone.
func processState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fields[0]
}

// children returns the pids whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if fields[1] == strconv.Itoa(pid) {
			kids = append(kids, n)
		}
	}
	return kids
}

// queryWithin runs select 1 on p with a timeout and returns its error.
func queryWithin(p *dbtest.PG, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	_, err := p.QueryInt(ctx, "postgres", "select 1")
	return err
}

func TestFreezeThawStopStart(t *testing.T) {
	dbtest.SkipIfMissing(t)
	t.Parallel()
	ctx := t.Context()
	p, err := dbtest.StartPG(ctx, "solo", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	if err := p.Exec(ctx, "create table kept (v int); insert into kept values (42)"); err != nil {
		t.Fatal(err)
	}
	held, err := p.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())

	if err := p.Freeze(); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	kids := children(t, pid)
	if len(kids) == 0 {
		t.Fatal("postmaster has no children")
	}
	for _, k := range append([]int{pid}, kids...) {
		if st := processState(k); st != "T" && st != "Z" {
			t.Errorf("process %d in state %q while frozen, want T (or Z)", k, st)
		}
	}
	start := time.Now()
	if err := queryWithin(p, time.Second); err == nil {
		t.Fatal("new connection to frozen server succeeded")
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	err = held.QueryRow(qctx, "select 1").Scan(new(int))
	cancel()
	if err == nil {
		t.Fatal("query over open connection to frozen server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("queries to frozen server took %s to fail", d)
	}

	if err := p.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := queryWithin(p, 5*time.Second); err != nil {
		t.Fatalf("query after thaw: %v", err)
	}

	port := p.Port
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := queryWithin(p, time.Second); err == nil {
		t.Fatal("query on stopped server succeeded")
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Port != port {
		t.Errorf("port after restart = %d, want %d", p.Port, port)
	}
	if v, err := p.QueryInt(ctx, "postgres", "select v from kept"); err != nil || v != 42 {
		t.Errorf("data after restart = %d, %v; want 42", v, err)
	}

	// Close kills a frozen server with all its children and removes its directory.
	if err := p.Freeze(); err != nil {
		t.Fatal(err)
	}
	pid = p.PID()
	procs := append([]int{pid}, children(t, pid)...)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, k := range procs {
		if st := processState(k); st != "" {
			t.Errorf("process %d still there after Close, state %q", k, st)
		}
	}
	if _, err := os.Stat(p.Root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %q still there after Close: %v", p.Root, err)
	}
}

func TestProxyBlackhole(t *testing.T) {
	t.Parallel()
	env := dbtest.SharedEnv(t)
	ctx := t.Context()
	pr, err := dbtest.NewProxy("127.0.0.1:" + strconv.Itoa(env.Left.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	dsn := env.Left.DSNVia(pr, dbtest.EnvDB)
	if !strings.Contains(dsn, ":"+strconv.Itoa(pr.Port())+"/") {
		t.Fatalf("DSNVia = %q, want proxy port %d", dsn, pr.Port())
	}

	open := func(limit time.Duration) (*pgxConn, error) { return connect(ctx, dsn, limit) }
	held, err := open(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.close()
	waiting, err := open(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.close()
	if err := held.selectOne(time.Second); err != nil {
		t.Fatal(err)
	}

	pr.Blackhole(true)
	pr.Blackhole(true) // idempotent
	if err := held.selectOne(time.Second); err == nil {
		t.Fatal("query through blackholed proxy succeeded")
	}
	if c, err := open(time.Second); err == nil {
		c.close()
		t.Fatal("connection through blackholed proxy succeeded")
	}
	// A query sent while blackholed completes once forwarding resumes: the
	// connection stays open.
	result := make(chan error, 1)
	go func() { result <- waiting.selectOne(10 * time.Second) }()
	select {
	case err := <-result:
		t.Fatalf("query finished while blackholed: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	pr.Blackhole(false)
	pr.Blackhole(false) // idempotent
	if err := <-result; err != nil {
		t.Fatalf("held query after resume: %v", err)
	}
	c, err := open(5 * time.Second)
	if err != nil {
		t.Fatalf("connection after resume: %v", err)
	}
	c.close()

	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := open(time.Second); err == nil {
		c.close()
		t.Fatal("connection through closed proxy succeeded")
	}
}

func TestSharedEnvLayout(t *testing.T) {
	env := dbtest.SharedEnv(t)
	servers := []*dbtest.PG{env.Primary, env.Standby, env.Left, env.Right}
	var ports []int
	for _, p := range servers {
		if p.PID() == 0 {
			t.Errorf("%s not running", p.Name)
		}
		if !strings.HasPrefix(p.Dir, env.Dir) {
			t.Errorf("%s data directory %q not under %q", p.Name, p.Dir, env.Dir)
		}
		ports = append(ports, p.Port)
	}
	slices.Sort(ports)
	if len(slices.Compact(ports)) != len(servers) {
		t.Errorf("servers share ports: %v", ports)
	}
	inRecovery, err := env.Standby.QueryInt(t.Context(), "postgres",
		"select pg_is_in_recovery()::int")
	if err != nil || inRecovery != 1 {
		t.Errorf("standby in recovery = %d, %v; want 1", inRecovery, err)
	}
	if env.Logical.A != env.Left || env.Logical.B != env.Right || env.Logical.DB != "app" {
		t.Errorf("Logical = %+v, want Left, Right, app", env.Logical)
	}
}

// pgxConn is a connection used by the proxy test.
type pgxConn struct{ conn *pgx.Conn }

// connect opens a connection to dsn, giving up after limit.
func connect(ctx context.Context, dsn string, limit time.Duration) (*pgxConn, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return &pgxConn{conn: conn}, nil
}

// selectOne runs select 1, giving up after limit.
func (c *pgxConn) selectOne(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var one int
	return c.conn.QueryRow(ctx, "select 1").Scan(&one)
}

// close closes the connection without waiting long.
func (c *pgxConn) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.conn.Close(ctx)
}
