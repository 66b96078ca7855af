package dbtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Names of the tables, publications and subscriptions SetupLogical creates.
const (
	TableA = "a_rows" // written on A, replicated from A to B
	TableB = "b_rows" // written on B, replicated from B to A
	PubA   = "pub_a_rows"
	PubB   = "pub_b_rows"
	SubA   = "sub_a_rows" // on B, subscribes to PubA
	SubB   = "sub_b_rows" // on A, subscribes to PubB

	// Heartbeat tables, one per direction, each written only on the side
	// that publishes it. One table for both directions cannot work: each
	// side would publish the rows it received from the other back to it.
	HeartbeatA = "spengler_heartbeat_a" // written on A, in PubA
	HeartbeatB = "spengler_heartbeat_b" // written on B, in PubB
)

// BRowsStart is the first id of b_rows, so that ids of the two tables never meet
// and a query that reads the wrong table finds nothing.
const BRowsStart = 1_000_000_001

// logicalTimeout bounds SetupLogical and the waits of Break and Heal.
const logicalTimeout = 60 * time.Second

// Logical is two-way logical replication between A and B in database DB: table
// a_rows is written on A and replicated to B, table b_rows is written on B and
// replicated to A. The heartbeat tables travel the same way: HeartbeatA with
// a_rows, HeartbeatB with b_rows.
type Logical struct {
	A, B *PG
	DB   string
}

// rowsTable returns the DDL of a table with the harness schema.
func rowsTable(name string, start int64) string {
	return fmt.Sprintf("create table if not exists %s ("+
		"id bigint generated always as identity (start with %d) primary key, "+
		"payload text not null default '', "+
		"created_at timestamptz not null default now())",
		pgx.Identifier{name}.Sanitize(), start)
}

// heartbeatTable returns the DDL of a heartbeat table: origin text primary
// key, ts_us bigint not null.
func heartbeatTable(name string) string {
	return fmt.Sprintf("create table if not exists %s "+
		"(origin text primary key, ts_us bigint not null)", pgx.Identifier{name}.Sanitize())
}

// SetupLogical creates database db on a and b if missing, tables a_rows and b_rows
// and the heartbeat tables on both, publication pub_a_rows (a_rows and
// HeartbeatA) on a and pub_b_rows (b_rows and HeartbeatB) on b, subscription
// sub_a_rows on b and sub_b_rows on a (copying existing data), and waits until both
// subscriptions have synchronised their tables. One pair of servers carries at most
// one Logical: the replication slots are named after the subscriptions.
func SetupLogical(ctx context.Context, a, b *PG, db string) (*Logical, error) {
	ctx, cancel := context.WithTimeout(ctx, logicalTimeout)
	defer cancel()
	l := &Logical{A: a, B: b, DB: db}
	for _, p := range []*PG{a, b} {
		if err := EnsureDB(ctx, p, db); err != nil {
			return nil, fmt.Errorf("set up logical replication: %w", err)
		}
		err := p.ExecDB(ctx, db, rowsTable(TableA, 1)+"; "+rowsTable(TableB, BRowsStart)+"; "+
			heartbeatTable(HeartbeatA)+"; "+heartbeatTable(HeartbeatB))
		if err != nil {
			return nil, fmt.Errorf("set up logical replication: %w", err)
		}
	}
	steps := []struct {
		on  *PG
		sql string
	}{
		{a, fmt.Sprintf("create publication %s for table %s, %s", PubA, TableA, HeartbeatA)},
		{b, fmt.Sprintf("create publication %s for table %s, %s", PubB, TableB, HeartbeatB)},
		{b, fmt.Sprintf("create subscription %s connection %s publication %s "+
			"with (copy_data = true)", SubA, quoteLiteral(conninfo(a, db)), PubA)},
		{a, fmt.Sprintf("create subscription %s connection %s publication %s "+
			"with (copy_data = true)", SubB, quoteLiteral(conninfo(b, db)), PubB)},
	}
	for _, s := range steps {
		if err := s.on.ExecDB(ctx, db, s.sql); err != nil {
			return nil, fmt.Errorf("set up logical replication: %w", err)
		}
	}
	const ready = "select count(*) from pg_subscription_rel r " +
		"join pg_subscription s on s.oid = r.srsubid " +
		"where s.subname = $1 and r.srsubstate = 'r'"
	if err := b.WaitInt(ctx, db, 2, ready, SubA); err != nil {
		return nil, fmt.Errorf("set up logical replication: %w", err)
	}
	if err := a.WaitInt(ctx, db, 2, ready, SubB); err != nil {
		return nil, fmt.Errorf("set up logical replication: %w", err)
	}
	return l, nil
}

// EnsureDB creates database db on p unless it exists.
func EnsureDB(ctx context.Context, p *PG, db string) error {
	n, err := p.QueryInt(ctx, "postgres", "select count(*) from pg_database where datname = $1", db)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	err = p.Exec(ctx, "create database "+pgx.Identifier{db}.Sanitize())
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42P04" {
		return nil // created meanwhile by someone else
	}
	return err
}

// conninfo is the libpq connection string a subscriber uses to reach p.
func conninfo(p *PG, db string) string {
	v := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db)
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname='%s'", p.Port, v)
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// BreakAToB disables subscription sub_a_rows on B and waits until its worker has
// exited, so that rows written on A from then on do not reach B.
func (l *Logical) BreakAToB(ctx context.Context) error {
	return l.setEnabled(ctx, l.B, SubA, false)
}

// HealAToB enables subscription sub_a_rows on B again and waits until its worker runs.
func (l *Logical) HealAToB(ctx context.Context) error {
	return l.setEnabled(ctx, l.B, SubA, true)
}

// BreakBToA disables subscription sub_b_rows on A and waits until its worker has
// exited, so that rows written on B from then on do not reach A.
func (l *Logical) BreakBToA(ctx context.Context) error {
	return l.setEnabled(ctx, l.A, SubB, false)
}

// HealBToA enables subscription sub_b_rows on A again and waits until its worker runs.
func (l *Logical) HealBToA(ctx context.Context) error {
	return l.setEnabled(ctx, l.A, SubB, true)
}

// setEnabled enables or disables subscription sub on p and waits until its apply
// worker runs or is gone accordingly.
func (l *Logical) setEnabled(ctx context.Context, p *PG, sub string, on bool) error {
	ctx, cancel := context.WithTimeout(ctx, logicalTimeout)
	defer cancel()
	verb, want := "disable", int64(0)
	if on {
		verb, want = "enable", 1
	}
	if err := p.ExecDB(ctx, l.DB, "alter subscription "+sub+" "+verb); err != nil {
		return err
	}
	err := p.WaitInt(ctx, l.DB, want, "select count(*) from pg_stat_subscription "+
		"where subname = $1 and relid is null and pid is not null", sub)
	if err != nil {
		return fmt.Errorf("%s subscription %q: %w", verb, sub, err)
	}
	return nil
}

// InsertA inserts n rows into a_rows on A.
func (l *Logical) InsertA(ctx context.Context, n int) error {
	_, err := l.A.InsertRows(ctx, l.DB, TableA, n)
	return err
}

// InsertB inserts n rows into b_rows on B.
func (l *Logical) InsertB(ctx context.Context, n int) error {
	_, err := l.B.InsertRows(ctx, l.DB, TableB, n)
	return err
}
