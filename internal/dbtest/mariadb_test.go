package dbtest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// mariaInsert inserts one row on the source of d and returns its id.
func mariaInsert(t *testing.T, env *dbtest.MariaEnv, d dbtest.Direction) int64 {
	t.Helper()
	id, err := env.Insert(t.Context(), d, 1)
	if err != nil {
		t.Fatal(err)
	}
	if id <= 0 {
		t.Fatalf("%s: insert returned id %d", d, id)
	}
	return id
}

// mariaWaitRow fails t unless the row with id of d reaches the target of d in time.
func mariaWaitRow(t *testing.T, env *dbtest.MariaEnv, d dbtest.Direction, id int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), arrivalTimeout)
	defer cancel()
	start := time.Now()
	if err := env.WaitReplicated(ctx, d, id); err != nil {
		t.Fatalf("row %d of %s did not reach %s: %v", id, env.Table(d), env.Target(d).Name, err)
	}
	t.Logf("%s: row %d reached %s after %s", d, id, env.Target(d).Name,
		time.Since(start).Round(time.Millisecond))
}

// mariaAssertAbsent fails t if the row with id of d appears on the target of d
// within limit.
func mariaAssertAbsent(t *testing.T, env *dbtest.MariaEnv, d dbtest.Direction, id int64,
	limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, err := env.Target(d).HasRow(t.Context(), dbtest.EnvDB, env.Table(d), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Fatalf("%s: row %d reached %s although replication is broken",
				d, id, env.Target(d).Name)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// threads returns Slave_IO_Running and Slave_SQL_Running of the target of d.
func threads(t *testing.T, env *dbtest.MariaEnv, d dbtest.Direction) (io, sqlThread string) {
	t.Helper()
	st, err := env.Target(d).SlaveStatus(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st == nil {
		t.Fatalf("%s: %s has no replica status", d, env.Target(d).Name)
	}
	return st["Slave_IO_Running"], st["Slave_SQL_Running"]
}

// mariaQueryWithin runs select 1 on m with a timeout and returns its error.
func mariaQueryWithin(m *dbtest.MariaDB, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	_, err := m.QueryInt(ctx, "", "select 1")
	return err
}

// other returns the opposite direction.
func other(d dbtest.Direction) dbtest.Direction {
	if d == dbtest.AToB {
		return dbtest.BToA
	}
	return dbtest.AToB
}

func TestMariaDBBinariesOverride(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the binary checks always report a skip")
	}
	t.Setenv("SPENGLER_MARIADB_BINDIR", t.TempDir())
	_, err := dbtest.MariaDBBinaries()
	if !errors.Is(err, dbtest.ErrMariaDBNotInstalled) {
		t.Fatalf("MariaDBBinaries with an empty override: got %v, want ErrMariaDBNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "mariadb-server") {
		t.Errorf("error %q does not name the package mariadb-server", err)
	}
	t.Setenv("SPENGLER_REQUIRE_DB", "")
	if err := dbtest.CheckMariaDB(); err == nil || !strings.Contains(err.Error(), "skip") {
		t.Errorf("CheckMariaDB without SPENGLER_REQUIRE_DB = %v, want a skip notice", err)
	}
	t.Setenv("SPENGLER_REQUIRE_DB", "1")
	if err := dbtest.CheckMariaDB(); err == nil || !strings.Contains(err.Error(), "fail") {
		t.Errorf("CheckMariaDB with SPENGLER_REQUIRE_DB=1 = %v, want a failure notice", err)
	}
}

func TestMariaDSN(t *testing.T) {
	m := &dbtest.MariaDB{Port: 33061}
	if got, want := m.DSN("spengler", "pw", "app"), "spengler:pw@tcp(127.0.0.1:33061)/app"; got != want {
		t.Errorf("DSN = %q, want %q", got, want)
	}
	if got, want := m.DSN("root", "", ""), "root@tcp(127.0.0.1:33061)/"; got != want {
		t.Errorf("DSN without password and database = %q, want %q", got, want)
	}
	cfg, err := mysql.ParseDSN(m.DSN("u", "p:w@x", "app"))
	if err != nil || cfg.User != "u" || cfg.Passwd != "p:w@x" || cfg.Addr != "127.0.0.1:33061" ||
		cfg.DBName != "app" {
		t.Errorf("DSN with a password holding ':' and '@' parses as %+v, %v", cfg, err)
	}
	if got := m.Addr(); got != "127.0.0.1:33061" {
		t.Errorf("Addr = %q", got)
	}
	pr, err := dbtest.NewProxy(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	if got, want := m.DSNVia(pr, "u", "p", "app"), "u:p@tcp("+pr.Addr()+")/app"; got != want {
		t.Errorf("DSNVia = %q, want %q", got, want)
	}
}

func TestMariaEnvLayout(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	ctx := t.Context()
	if env.A.Port == env.B.Port || env.A.Port == 3306 || env.B.Port == 3306 {
		t.Errorf("ports A %d, B %d: want distinct and not 3306", env.A.Port, env.B.Port)
	}
	for i, m := range []*dbtest.MariaDB{env.A, env.B} {
		pid := m.PID()
		if pid == 0 {
			t.Fatalf("%s not running", m.Name)
		}
		if !strings.HasPrefix(m.Dir, env.Dir) {
			t.Errorf("%s data directory %q not under %q", m.Name, m.Dir, env.Dir)
		}
		// The server works in its data directory: orphan reaping relies on it.
		if cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd"); err != nil ||
			filepath.Clean(cwd) != filepath.Clean(m.Dir) {
			t.Errorf("%s works in %q (%v), want %q", m.Name, cwd, err, m.Dir)
		}
		if os.Geteuid() == 0 {
			if uid := processUID(t, pid); uid == 0 {
				t.Errorf("%s runs as root", m.Name)
			}
		}
		for _, c := range []struct {
			query string
			want  int64
		}{
			{"select @@server_id", int64(i + 1)},
			{"select @@gtid_domain_id", int64(i + 1)},
			{"select @@auto_increment_increment", 2},
			{"select @@auto_increment_offset", int64(i + 1)},
			{"select @@log_bin", 1},
			{"select @@log_slave_updates", 1},
			{"select @@gtid_strict_mode", 1},
			{"select @@binlog_format = 'ROW'", 1},
			{"select @@port", int64(m.Port)},
			{"select count(*) from information_schema.tables " +
				"where table_schema = 'app' and table_name in ('a_rows', 'b_rows')", 2},
		} {
			if got, err := m.QueryInt(ctx, "", c.query); err != nil || got != c.want {
				t.Errorf("%s: %s = %d, %v; want %d", m.Name, c.query, got, err, c.want)
			}
		}
		if _, err := os.Stat(m.LogFile); err != nil {
			t.Errorf("%s: log file: %v", m.Name, err)
		}
	}
	for _, d := range []dbtest.Direction{dbtest.AToB, dbtest.BToA} {
		st, err := env.Target(d).SlaveStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st["Master_Port"] != strconv.Itoa(env.Source(d).Port) || st["Using_Gtid"] != "Slave_Pos" {
			t.Errorf("%s: replica of %s reads port %s using %s; want port %d, Slave_Pos",
				d, env.Target(d).Name, st["Master_Port"], st["Using_Gtid"], env.Source(d).Port)
		}
	}
	if got := env.Table(dbtest.AToB) + "," + env.Table(dbtest.BToA); got != "a_rows,b_rows" {
		t.Errorf("tables = %s", got)
	}
}

// processUID returns the real uid of pid.
func processUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			uid, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return -1
}

func TestMariaEnvBothWays(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	idA, err := env.Insert(t.Context(), dbtest.AToB, 3)
	if err != nil {
		t.Fatal(err)
	}
	if idA%2 != 1 {
		t.Errorf("a_rows id %d written on A is not odd", idA)
	}
	mariaWaitRow(t, env, dbtest.AToB, idA)
	idB := mariaInsert(t, env, dbtest.BToA)
	if idB < dbtest.BRowsStart || idB%2 != 0 {
		t.Errorf("b_rows id %d written on B: want even and at least %d", idB, dbtest.BRowsStart)
	}
	mariaWaitRow(t, env, dbtest.BToA, idB)
	// Each side's own rows come back to it through the other side and are not
	// applied twice.
	for _, m := range []*dbtest.MariaDB{env.A, env.B} {
		n, err := m.QueryInt(t.Context(), dbtest.EnvDB,
			"select count(*) from a_rows where id = ?", idA)
		if err != nil || n != 1 {
			t.Errorf("%s holds row %d of a_rows %d times (%v), want once", m.Name, idA, n, err)
		}
	}
}

// TestMariaRestart stops B and starts it again: replication in both directions
// resumes. It runs before the parallel tests.
func TestMariaRestart(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	ctx := t.Context()
	port, pid := env.B.Port, env.B.PID()
	t.Cleanup(func() {
		if env.B.PID() == 0 {
			if err := env.B.Start(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})
	if err := env.B.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := env.B.PID(); got != 0 {
		t.Errorf("PID of stopped server = %d, want 0", got)
	}
	if err := mariaQueryWithin(env.B, time.Second); err == nil {
		t.Error("query on stopped server succeeded")
	}
	if err := env.B.Stop(); err == nil {
		t.Error("Stop of a stopped server succeeded")
	}
	idA := mariaInsert(t, env, dbtest.AToB)
	if err := env.B.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.B.Start(ctx); err == nil {
		t.Error("Start of a running server succeeded")
	}
	if env.B.Port != port || env.B.PID() == pid || env.B.PID() == 0 {
		t.Errorf("after restart port %d pid %d, before port %d pid %d",
			env.B.Port, env.B.PID(), port, pid)
	}
	mariaWaitRow(t, env, dbtest.AToB, idA)
	mariaWaitRow(t, env, dbtest.BToA, mariaInsert(t, env, dbtest.BToA))
	for _, d := range []dbtest.Direction{dbtest.AToB, dbtest.BToA} {
		if io, sqlThread := threads(t, env, d); io != "Yes" || sqlThread != "Yes" {
			t.Errorf("%s after restart: io %q, sql %q; want Yes, Yes", d, io, sqlThread)
		}
	}
}

// TestMariaFreezeThaw freezes A: queries time out, over new connections and open
// ones; after Thaw A answers again and replication runs both ways.
func TestMariaFreezeThaw(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	ctx := t.Context()
	db, err := env.A.OpenDB("")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	held, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := held.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.A.Thaw(); err != nil {
			t.Error(err)
		}
	})
	if err := env.A.Freeze(); err != nil {
		t.Fatal(err)
	}
	if st := processState(env.A.PID()); st != "T" {
		t.Errorf("frozen server in state %q, want T", st)
	}
	start := time.Now()
	if err := mariaQueryWithin(env.A, time.Second); err == nil {
		t.Fatal("new connection to frozen server answered")
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	err = held.QueryRowContext(qctx, "select 1").Scan(new(int))
	cancel()
	if err == nil {
		t.Fatal("query over open connection to frozen server answered")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("queries to frozen server took %s to fail", d)
	}
	if err := env.A.Freeze(); err != nil {
		t.Errorf("second Freeze: %v", err)
	}

	if err := env.A.Thaw(); err != nil {
		t.Fatal(err)
	}
	if st := processState(env.A.PID()); st == "T" {
		t.Error("thawed server still stopped")
	}
	if err := mariaQueryWithin(env.A, 10*time.Second); err != nil {
		t.Fatalf("query after thaw: %v", err)
	}
	mariaWaitRow(t, env, dbtest.AToB, mariaInsert(t, env, dbtest.AToB))
	mariaWaitRow(t, env, dbtest.BToA, mariaInsert(t, env, dbtest.BToA))
}

// TestMariaBreakHeal breaks each direction in each way: only that direction
// stops, the other keeps replicating, and Heal brings the missing rows across.
func TestMariaBreakHeal(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	for _, d := range []dbtest.Direction{dbtest.AToB, dbtest.BToA} {
		t.Run(d.String()+"/io", func(t *testing.T) {
			testBreak(t, env, d, false)
		})
		t.Run(d.String()+"/sql", func(t *testing.T) {
			testBreak(t, env, d, true)
		})
	}
}

// testBreak breaks d with BreakSQL (sqlThread) or BreakIO, checks, and heals it.
func testBreak(t *testing.T, env *dbtest.MariaEnv, d dbtest.Direction, sqlThread bool) {
	ctx := t.Context()
	t.Cleanup(func() {
		if err := env.Heal(context.Background(), d); err != nil {
			t.Error(err)
		}
	})
	wantIO, wantSQL := "No", "Yes"
	breakIt := env.BreakIO
	if sqlThread {
		wantIO, wantSQL = "Yes", "No"
		breakIt = env.BreakSQL
	}
	if err := breakIt(ctx, d); err != nil {
		t.Fatal(err)
	}
	if io, s := threads(t, env, d); io != wantIO || s != wantSQL {
		t.Errorf("%s broken: io %q, sql %q; want %q, %q", d, io, s, wantIO, wantSQL)
	}
	if io, s := threads(t, env, other(d)); io != "Yes" || s != "Yes" {
		t.Errorf("%s while %s is broken: io %q, sql %q; want Yes, Yes", other(d), d, io, s)
	}

	id := mariaInsert(t, env, d)
	// The other direction still works.
	mariaWaitRow(t, env, other(d), mariaInsert(t, env, other(d)))
	if sqlThread {
		// The row reaches the target's relay log, and stays unapplied.
		wctx, cancel := context.WithTimeout(ctx, arrivalTimeout)
		err := env.WaitReceived(wctx, d)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		mariaAssertAbsent(t, env, d, id, absentFor/2)
	} else {
		mariaAssertAbsent(t, env, d, id, absentFor)
	}

	if err := env.Heal(ctx, d); err != nil {
		t.Fatal(err)
	}
	if io, s := threads(t, env, d); io != "Yes" || s != "Yes" {
		t.Errorf("%s healed: io %q, sql %q; want Yes, Yes", d, io, s)
	}
	mariaWaitRow(t, env, d, id)
	mariaWaitRow(t, env, d, mariaInsert(t, env, d))
}

func TestMariaMonitorCannotWrite(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	ctx := t.Context()
	for _, m := range []*dbtest.MariaDB{env.A, env.B} {
		db, err := sql.Open("mysql", env.MonitorDSN(m))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int64
		if err := db.QueryRowContext(ctx, "select count(*) from a_rows").Scan(&n); err != nil {
			t.Fatalf("%s: monitor user cannot read a_rows: %v", m.Name, err)
		}
		for _, stmt := range []string{
			"insert into a_rows (payload) values ('monitor')",
			"update b_rows set payload = 'monitor'",
			"delete from a_rows",
			"create table monitor_t (id int)",
			"select count(*) from mysql.user",
		} {
			_, err := db.ExecContext(ctx, stmt)
			var myErr *mysql.MySQLError
			// 1142: command denied on table; 1044: access denied to database.
			if !errors.As(err, &myErr) || (myErr.Number != 1142 && myErr.Number != 1044) {
				t.Errorf("%s: monitor user ran %q: got %v, want access denied", m.Name, stmt, err)
			}
		}
		bad := m.DSN(dbtest.MariaMonitorUser, "wrong", dbtest.EnvDB)
		if err := pingDSN(ctx, bad); err == nil {
			t.Errorf("%s: monitor user logged in with a wrong password", m.Name)
		}
	}
}

// pingDSN opens dsn and pings it.
func pingDSN(ctx context.Context, dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// TestMariaProcessList proves that the process list shows a running statement
// and that it is gone once killed, and once max_statement_time ends it.
func TestMariaProcessList(t *testing.T) {
	env := dbtest.SharedMariaEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m := env.A
	db, err := sql.Open("mysql", env.MonitorDSN(m))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	query := fmt.Sprintf("dbtest-marker-%d", time.Now().UnixNano())
	done := make(chan error, 1)
	go func() {
		var v int
		var s string
		done <- db.QueryRowContext(ctx, "select sleep(60), '"+query+"'").Scan(&v, &s)
	}()
	if err := m.WaitQueries(ctx, query, 1); err != nil {
		t.Fatal(err)
	}
	list, err := m.ProcessList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	for _, p := range list {
		if strings.Contains(p.Info, query) {
			id = p.ID
			if p.User != dbtest.MariaMonitorUser || p.DB != dbtest.EnvDB {
				t.Errorf("process %+v: want user %s, database %s", p, dbtest.MariaMonitorUser, dbtest.EnvDB)
			}
		}
		if strings.Contains(p.Info, "information_schema.processlist") {
			t.Errorf("process list shows its own query: %+v", p)
		}
	}
	if id == 0 {
		t.Fatalf("sleeping statement not in process list %+v", list)
	}
	if err := m.Exec(ctx, "kill query "+strconv.FormatInt(id, 10)); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitQueries(ctx, query, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("killed statement did not return")
	}

	// A server-side statement timeout leaves nothing running either.
	start := time.Now()
	var v int
	err = db.QueryRowContext(ctx, "set statement max_statement_time = 0.5 for select sleep(60)").Scan(&v)
	var myErr *mysql.MySQLError
	if err != nil && !(errors.As(err, &myErr) && myErr.Number == 1969) {
		t.Fatalf("statement with max_statement_time: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("max_statement_time 0.5s ended the statement after %s", d)
	}
	if n, err := m.CountQueries(ctx, "select sleep(60)"); err != nil || n != 0 {
		t.Errorf("statements still running after max_statement_time: %d, %v", n, err)
	}
}

// TestMariaDBSolo runs a server of its own: its data survives Stop and Start, and
// Close kills it while frozen and removes its directory.
func TestMariaDBSolo(t *testing.T) {
	dbtest.SkipIfMariaDBMissing(t)
	t.Parallel()
	ctx := t.Context()
	m, err := dbtest.StartMariaDB(ctx, "solo", t.TempDir(), 7)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if got, err := m.QueryInt(ctx, "", "select @@auto_increment_offset"); err != nil || got != 1 {
		t.Errorf("auto_increment_offset of server 7 = %d, %v; want 1", got, err)
	}
	if err := m.Exec(ctx, "create database kept; create table kept.t (v int); "+
		"insert into kept.t values (42)"); err != nil {
		t.Fatal(err)
	}
	port := m.Port
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Port != port {
		t.Errorf("port after restart = %d, want %d", m.Port, port)
	}
	if v, err := m.QueryInt(ctx, "kept", "select v from t"); err != nil || v != 42 {
		t.Errorf("data after restart = %d, %v; want 42", v, err)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	pid := m.PID()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if st := processState(pid); st != "" && st != "Z" {
		t.Errorf("server process %d still there after Close, state %q", pid, st)
	}
	if _, err := os.Stat(m.Root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %q still there after Close: %v", m.Root, err)
	}
	if err := m.Start(ctx); err == nil {
		t.Error("Start after Close succeeded")
	}
	if _, err := dbtest.StartMariaDB(ctx, "bad", t.TempDir(), 0); err == nil {
		t.Error("StartMariaDB with server id 0 succeeded")
	}
}
