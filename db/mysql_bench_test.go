package db

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// BenchmarkMySQLCheck100 measures one check of a direction with 100 selected
// ids on MariaDB: the selector on one side and the validator for every id on
// the other. "one_statement" is Spengler's way, one round trip per side;
// "per_id" asks about the ids one round trip at a time, through a prepared
// statement.
func BenchmarkMySQLCheck100(b *testing.B) {
	my := needMy(b)
	ctx := context.Background()
	const (
		selector  = "select id, ts from t order by id desc limit 100"
		validator = "select count(*) from t where id = ?"
	)

	b.Run("one_statement", func(b *testing.B) {
		m := openMy(b, my.DSN("monitor", "Monitor-pw-9", "app"), "")
		for b.Loop() {
			resp, err := m.Do(ctx, Request{Timeout: 5 * time.Second,
				Select: &Select{Query: selector, MaxRows: 100}})
			if err != nil {
				b.Fatal(err)
			}
			resp, err = m.Do(ctx, Request{Timeout: 5 * time.Second,
				Probe: &Probe{Query: validator, IDs: ids(resp), NumericIDs: resp.NumericIDs}})
			if err != nil || len(resp.Answers) != 100 || !resp.Answers[99].Present {
				b.Fatalf("answers %d, err %v", len(resp.Answers), err)
			}
		}
	})

	b.Run("per_id", func(b *testing.B) {
		cfg, err := mysql.ParseDSN(my.DSN("monitor", "Monitor-pw-9", "app"))
		if err != nil {
			b.Fatal(err)
		}
		cfg.ParseTime = true
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			b.Fatal(err)
		}
		pool := sql.OpenDB(conn)
		defer pool.Close()
		stmt, err := pool.PrepareContext(ctx, validator)
		if err != nil {
			b.Fatal(err)
		}
		defer stmt.Close()
		for b.Loop() {
			rows, err := pool.QueryContext(ctx, selector)
			if err != nil {
				b.Fatal(err)
			}
			var list []int64
			for rows.Next() {
				var id int64
				var ts time.Time
				if err := rows.Scan(&id, &ts); err != nil {
					b.Fatal(err)
				}
				list = append(list, id)
			}
			rows.Close()
			for _, id := range list {
				var n int64
				if err := stmt.QueryRowContext(ctx, id).Scan(&n); err != nil || n != 1 {
					b.Fatalf("id %d: n %d err %v", id, n, err)
				}
			}
		}
	})
}
