package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// copyRow is one row a copier carries: its id, kept, and its payload.
type copyRow struct {
	id      int64
	payload string
}

// copyTable is one end of a copier: a table with columns id and payload.
type copyTable interface {
	// after returns the rows with an id above id, in id order, at most 500.
	after(ctx context.Context, id int64) ([]copyRow, error)
	// put inserts rows, skipping those already there.
	put(ctx context.Context, rows []copyRow) error
	// top returns the highest id, 0 when the table is empty.
	top(ctx context.Context) (int64, error)
	close()
}

// pgTable is a table of database app on a PostgreSQL server, over a
// connection of its own.
type pgTable struct {
	conn *pgx.Conn
	name string
}

func openPGTable(t *testing.T, p *dbtest.PG, name string) *pgTable {
	t.Helper()
	conn, err := p.Connect(t.Context(), dbtest.EnvDB)
	if err != nil {
		t.Fatal(err)
	}
	return &pgTable{conn: conn, name: pgx.Identifier{name}.Sanitize()}
}

func (p *pgTable) after(ctx context.Context, id int64) ([]copyRow, error) {
	rows, err := p.conn.Query(ctx,
		"select id, payload from "+p.name+" where id > $1 order by id limit 500", id)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (copyRow, error) {
		var c copyRow
		err := r.Scan(&c.id, &c.payload)
		return c, err
	})
}

func (p *pgTable) put(ctx context.Context, rows []copyRow) error {
	var b pgx.Batch
	for _, r := range rows {
		b.Queue("insert into "+p.name+" (id, payload) values ($1, $2) on conflict (id) do nothing",
			r.id, r.payload)
	}
	return p.conn.SendBatch(ctx, &b).Close()
}

func (p *pgTable) top(ctx context.Context) (int64, error) {
	var id int64
	err := p.conn.QueryRow(ctx, "select coalesce(max(id), 0) from "+p.name).Scan(&id)
	return id, err
}

func (p *pgTable) close() { p.conn.Close(context.Background()) }

// mariaTable is a table of database app on a MariaDB server, written as root.
type mariaTable struct {
	db   *sql.DB
	name string
}

func openMariaTable(t *testing.T, m *dbtest.MariaDB, name string) *mariaTable {
	t.Helper()
	h, err := m.OpenDB(dbtest.EnvDB)
	if err != nil {
		t.Fatal(err)
	}
	return &mariaTable{db: h, name: "`" + name + "`"}
}

func (m *mariaTable) after(ctx context.Context, id int64) ([]copyRow, error) {
	rows, err := m.db.QueryContext(ctx,
		"select id, payload from "+m.name+" where id > ? order by id limit 500", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []copyRow
	for rows.Next() {
		var c copyRow
		if err := rows.Scan(&c.id, &c.payload); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (m *mariaTable) put(ctx context.Context, rows []copyRow) error {
	for _, r := range rows {
		if _, err := m.db.ExecContext(ctx,
			"insert ignore into "+m.name+" (id, payload) values (?, ?)", r.id, r.payload); err != nil {
			return err
		}
	}
	return nil
}

func (m *mariaTable) top(ctx context.Context) (int64, error) {
	var id int64
	err := m.db.QueryRowContext(ctx, "select coalesce(max(id), 0) from "+m.name).Scan(&id)
	return id, err
}

func (m *mariaTable) close() { m.db.Close() }

// copier copies new rows from one table to another every 100ms, keeping
// their ids, like a CDC pipeline between engines. It can be paused.
type copier struct {
	from, to copyTable

	mu     sync.Mutex // held while a batch is copied
	paused bool
	last   int64 // highest id copied
	err    error // the last copy's error, nil when it worked
}

// startCopier starts copying from from to to, from the highest id to holds,
// until the test ends; it closes both tables then.
func startCopier(t *testing.T, from, to copyTable) *copier {
	t.Helper()
	c := &copier{from: from, to: to}
	top, err := to.top(t.Context())
	if err != nil {
		from.close()
		to.close()
		t.Fatal(err)
	}
	c.last = top
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			c.copyOnce(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		from.close()
		to.close()
	})
	return c
}

// copyOnce copies the rows that are new since the last copy, unless paused.
func (c *copier) copyOnce(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paused {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := c.from.after(ctx, c.last)
	if err == nil && len(rows) > 0 {
		if err = c.to.put(ctx, rows); err == nil {
			c.last = rows[len(rows)-1].id
		}
	}
	c.err = err
}

// pause stops copying after the batch under way and returns the highest id
// copied.
func (c *copier) pause() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = true
	return c.last
}

// resume copies again, starting with every row missed while paused.
func (c *copier) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = false
}

// failure returns the error of the last copy, nil when it worked.
func (c *copier) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return fmt.Errorf("copier: %w", c.err)
	}
	return nil
}
