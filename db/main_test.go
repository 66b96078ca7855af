package db

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// testPG is a PostgreSQL server shared by the tests of this package, with a
// table t of 100,000 rows (ids 1 to 100000) in database app.
var testPG *dbtest.PG

// testMy is a MariaDB server shared by the tests of this package, with the
// same table t in database app, and a table s of text ids.
var testMy *dbtest.MariaDB

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

// run starts the servers whose binaries are installed, runs the tests and
// stops the servers. Tests whose server is missing skip, or fail with
// SPENGLER_REQUIRE_DB=1.
func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "spengler-db-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	for _, start := range []func(context.Context, string) error{startPG, startMariaDB} {
		if err := start(ctx, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if dbtest.RequireDB() {
				return 1
			}
		}
	}
	if testPG != nil {
		defer testPG.Close()
	}
	if testMy != nil {
		defer testMy.Close()
	}
	return m.Run()
}

// startPG starts testPG, unless the PostgreSQL binaries are missing.
func startPG(ctx context.Context, dir string) error {
	if err := dbtest.CheckBinaries(); err != nil {
		return err
	}
	pg, err := dbtest.StartPG(ctx, "db", dir)
	if err != nil {
		return err
	}
	testPG = pg
	if err := ensureApp(ctx); err != nil {
		return err
	}
	for _, q := range []string{
		"create table t (id bigint primary key, note text, ts timestamptz not null default now())",
		"insert into t (id, note) select g, 'row ' || g from generate_series(1, 100000) g",
		"create table u (id uuid primary key, name text)",
		"insert into u values ('6f1c1b64-3a39-4b0b-9d4e-9f8f3c7f2a10', 'a')",
		"analyze t",
	} {
		if err := testPG.ExecDB(ctx, "app", q); err != nil {
			return err
		}
	}
	return nil
}

// startMariaDB starts testMy, unless the MariaDB binaries are missing.
func startMariaDB(ctx context.Context, dir string) error {
	if err := dbtest.CheckMariaDB(); err != nil {
		return err
	}
	my, err := dbtest.StartMariaDB(ctx, "db-mariadb", dir, 1)
	if err != nil {
		return err
	}
	testMy = my
	if err := my.Exec(ctx, "create database app"); err != nil {
		return err
	}
	for _, q := range []string{
		"create table app.t (id bigint primary key, note text, " +
			"ts timestamp(6) not null default current_timestamp(6))",
		"insert into app.t (id, note) select seq, concat('row ', seq) from seq_1_to_100000",
		"create table app.s (id varchar(64) primary key, version int not null default 1)",
		"create user monitor@'%' identified by 'Monitor-pw-9'",
		"grant select on app.* to monitor@'%'",
	} {
		if err := my.ExecDB(ctx, "app", q); err != nil {
			return err
		}
	}
	return nil
}

func ensureApp(ctx context.Context) error { return dbtest.EnsureDB(ctx, testPG, "app") }

// needPG returns the shared server, or skips the test when there is none.
func needPG(tb testing.TB) *dbtest.PG {
	tb.Helper()
	dbtest.SkipIfMissing(tb)
	if testPG == nil {
		tb.Fatal("test server not started")
	}
	return testPG
}

// needMy returns the shared MariaDB server, or skips the test when there is none.
func needMy(tb testing.TB) *dbtest.MariaDB {
	tb.Helper()
	dbtest.SkipIfMariaDBMissing(tb)
	if testMy == nil {
		tb.Fatal("MariaDB test server not started")
	}
	return testMy
}

func openMy(tb testing.TB, dsn, password string) *MySQL {
	tb.Helper()
	m, err := NewMySQL(MySQLOptions{DSN: dsn, Password: password, MaxConns: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Close)
	return m
}

func openTest(tb testing.TB, dsn string) *Postgres {
	tb.Helper()
	p, err := NewPostgres(PostgresOptions{DSN: dsn, MaxConns: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}
