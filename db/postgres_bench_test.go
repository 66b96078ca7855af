package db

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	benchSelector  = "select id, ts from t order by id desc limit 100"
	benchValidator = "select count(*) from t where id = $1"
)

// BenchmarkCheck100 measures one check of a direction with 100 selected ids:
// the selector on one side and the validator for every id on the other.
// "pipelined" is Spengler's way, one round trip per side; "naive" asks about
// the ids one round trip at a time.
func BenchmarkCheck100(b *testing.B) {
	pg := needPG(b)
	ctx := context.Background()

	b.Run("pipelined", func(b *testing.B) {
		p := openTest(b, pg.DSN("app"))
		for b.Loop() {
			resp, err := p.Do(ctx, Request{Timeout: 5 * time.Second,
				Select: &Select{Query: benchSelector, MaxRows: 100}})
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, len(resp.Rows))
			for i, r := range resp.Rows {
				ids[i] = r.ID
			}
			resp, err = p.Do(ctx, Request{Timeout: 5 * time.Second,
				Probe: &Probe{Query: benchValidator, IDs: ids}})
			if err != nil || len(resp.Answers) != 100 || !resp.Answers[99].Present {
				b.Fatalf("answers %d, err %v", len(resp.Answers), err)
			}
		}
	})

	b.Run("naive", func(b *testing.B) {
		pool, err := pgxpool.New(ctx, pg.DSN("app"))
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		for b.Loop() {
			rows, err := pool.Query(ctx, benchSelector)
			if err != nil {
				b.Fatal(err)
			}
			var ids []int64
			for rows.Next() {
				var id int64
				var ts time.Time
				if err := rows.Scan(&id, &ts); err != nil {
					b.Fatal(err)
				}
				ids = append(ids, id)
			}
			rows.Close()
			for _, id := range ids {
				var n int64
				if err := pool.QueryRow(ctx, benchValidator, id).Scan(&n); err != nil || n != 1 {
					b.Fatalf("id %s: n %d err %v", strconv.FormatInt(id, 10), n, err)
				}
			}
		}
	})
}
