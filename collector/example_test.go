package collector_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/collector"
	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/internal/dbtest"
)

// examplePG is the PostgreSQL server the examples run against, with two
// databases, east and west, each holding a table orders.
var examplePG *dbtest.PG

// TestMain starts the examples' server. Without the PostgreSQL server
// binaries the examples cannot run: the unit tests run alone, unless
// SPENGLER_REQUIRE_DB=1, where that is a failure.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(func() int {
		if err := dbtest.CheckBinaries(); err != nil {
			fmt.Fprintln(os.Stderr, "examples skipped:", err)
			if dbtest.RequireDB() {
				return 1
			}
			flag.Set("test.run", "^Test")
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "spengler-collector-example-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx := context.Background()
		examplePG, err = dbtest.StartPG(ctx, "example", dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer examplePG.Close()
		for _, db := range []string{"east", "west"} {
			if err := dbtest.EnsureDB(ctx, examplePG, db); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			// Rows 1 to 3 are on both sides; row 4, written an hour ago,
			// only on east.
			last := map[string]int{"east": 4, "west": 3}[db]
			err := examplePG.ExecDB(ctx, db, fmt.Sprintf(`create table orders as
				select g as id, now() - interval '1 hour' as created_at
				from generate_series(1, %d) g`, last))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}())
}

// exampleConfig is a configuration with two pairs over the example server:
// orders, whose newest three rows are on both sides, and backlog, whose
// newest row never reached west.
func exampleConfig() *config.Config {
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
global: {interval: 5s, timeout: 5s, max_lag: 1m}
databases:
  east: {driver: postgres, dsn: %q}
  west: {driver: postgres, dsn: %q}
pairs:
  - name: orders
    left: east
    right: west
    selector: select id, created_at as ts from orders where id <= 3 order by id desc
    validator: select count(*) from orders where id = $1
  - name: backlog
    left: east
    right: west
    directions: [left_to_right]
    selector: select id, created_at as ts from orders order by id desc limit 2
    validator: select count(*) from orders where id = $1
`, examplePG.DSN("east"), examplePG.DSN("west"))), "example.yml")
	if err != nil {
		panic(err)
	}
	return cfg
}

// Subscribe receives the result of every check as it finishes. Settle runs
// the checks once, until their answers are final, without the background
// scheduler.
func ExampleEngine_Subscribe() {
	engine := collector.New(collector.Options{})
	defer engine.Close()
	if err := engine.Apply(exampleConfig()); err != nil {
		panic(err)
	}

	engine.Subscribe(func(r *collector.Result) {
		fmt.Printf("%s %s: %s, %d missing\n", r.Pair, r.Direction, r.State, r.RowsMissing)
	})
	engine.Settle(context.Background(), time.Second)
	// Unordered output:
	// orders left_to_right: in_sync, 0 missing
	// orders right_to_left: in_sync, 0 missing
	// backlog left_to_right: out_of_sync, 1 missing
}

// SubscribePair receives the results of one pair only: here, to act on a
// direction of backlog as soon as a check finds it out of sync.
func ExampleEngine_SubscribePair() {
	engine := collector.New(collector.Options{})
	defer engine.Close()
	if err := engine.Apply(exampleConfig()); err != nil {
		panic(err)
	}

	engine.SubscribePair("backlog", func(r *collector.Result) {
		if !r.InSync {
			fmt.Printf("%s: rows of %s missing on %s: %v\n", r.Pair, r.Source, r.Target, r.MissingIDs)
		}
	})
	engine.Settle(context.Background(), time.Second)
	// Output:
	// backlog: rows of east missing on west: [4]
}
