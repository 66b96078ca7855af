package db

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// testPG is a PostgreSQL server shared by the tests of this package, with a
// table t of 100,000 rows (ids 1 to 100000) in database app.
var testPG *dbtest.PG

func TestMain(m *testing.M) {
	code := func() int {
		if err := dbtest.CheckBinaries(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if dbtest.RequireDB() {
				return 1
			}
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "spengler-db-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx := context.Background()
		testPG, err = dbtest.StartPG(ctx, "db", dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer testPG.Close()
		for _, q := range []string{
			"create table t (id bigint primary key, note text, ts timestamptz not null default now())",
			"insert into t (id, note) select g, 'row ' || g from generate_series(1, 100000) g",
			"create table u (id uuid primary key, name text)",
			"insert into u values ('6f1c1b64-3a39-4b0b-9d4e-9f8f3c7f2a10', 'a')",
			"analyze t",
		} {
			if err := ensureApp(ctx); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if err := testPG.ExecDB(ctx, "app", q); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
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

func openTest(tb testing.TB, dsn string) *Postgres {
	tb.Helper()
	p, err := NewPostgres(PostgresOptions{DSN: dsn, MaxConns: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}
