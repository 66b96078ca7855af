package dbtest

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
)

// HeartbeatTable is the heartbeat table the helpers here create for a
// physical standby or a MariaDB pair: one table, on both sides, for every
// origin.
const HeartbeatTable = "spengler_heartbeat"

// heartbeatWaitSQL counts the tables named $1 in the current database.
const heartbeatWaitSQL = "select count(*) from pg_tables where tablename = $1"

// CreateStreamHeartbeat creates HeartbeatTable in database app on e.Primary,
// unless it exists, and waits until e.Standby has received it.
func (e *Env) CreateStreamHeartbeat(ctx context.Context) error {
	if err := e.Primary.ExecDB(ctx, EnvDB, heartbeatTable(HeartbeatTable)); err != nil {
		return fmt.Errorf("create stream heartbeat: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	if err := e.Standby.WaitInt(ctx, EnvDB, 1, heartbeatWaitSQL, HeartbeatTable); err != nil {
		return fmt.Errorf("create stream heartbeat: %w", err)
	}
	return nil
}

// DSNAs returns the URL of database db on this server for role user, without
// TLS. The harness trusts every local connection: no password is needed.
func (p *PG) DSNAs(user, db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable",
		url.User(user).String(), p.Port, url.PathEscape(db))
}

// CreateReadOnlyRole creates login role role on p unless it exists, and lets
// it read, and only read, every table of the public schema of database db.
func (p *PG) CreateReadOnlyRole(ctx context.Context, db, role string) error {
	name := pgx.Identifier{role}.Sanitize()
	create := fmt.Sprintf("do $$ begin "+
		"if not exists (select from pg_roles where rolname = %s) then create role %s login; "+
		"end if; end $$", quoteLiteral(role), name)
	if err := p.Exec(ctx, create); err != nil {
		return err
	}
	return p.ExecDB(ctx, db, "grant select on all tables in schema public to "+name)
}

// CreateHeartbeat creates HeartbeatTable in database app on both servers,
// unless it exists, and lets [MariaMonitorUser] write it (INSERT and UPDATE,
// for the upsert). It runs without binary logging, like the set-up of the
// env: each server has the table of its own.
func (e *MariaEnv) CreateHeartbeat(ctx context.Context) error {
	stmts := strings.Join([]string{
		"set sql_log_bin = 0",
		"create table if not exists " + quoteIdent(EnvDB) + "." + quoteIdent(HeartbeatTable) +
			" (origin varchar(255) primary key, ts_us bigint not null) engine=InnoDB",
		fmt.Sprintf("grant insert, update on %s.%s to %s@'%%'", quoteIdent(EnvDB),
			quoteIdent(HeartbeatTable), quoteString(MariaMonitorUser)),
	}, "; ")
	for _, m := range []*MariaDB{e.A, e.B} {
		if err := m.Exec(ctx, stmts); err != nil {
			return fmt.Errorf("create heartbeat: %w", err)
		}
	}
	return nil
}

// CreateReadOnlyUser creates user (from any host, with password) on both
// servers unless it exists, and lets it read, and only read, database app.
// Like CreateHeartbeat it runs without binary logging.
func (e *MariaEnv) CreateReadOnlyUser(ctx context.Context, user, password string) error {
	stmts := strings.Join([]string{
		"set sql_log_bin = 0",
		fmt.Sprintf("create user if not exists %s@'%%' identified by %s",
			quoteString(user), quoteString(password)),
		fmt.Sprintf("grant select on %s.* to %s@'%%'", quoteIdent(EnvDB), quoteString(user)),
	}, "; ")
	for _, m := range []*MariaDB{e.A, e.B} {
		if err := m.Exec(ctx, stmts); err != nil {
			return fmt.Errorf("create read-only user: %w", err)
		}
	}
	return nil
}

// StopReplication stops both replica threads that carry d (STOP SLAVE on the
// target of d) and waits until neither runs. [MariaEnv.Heal] starts them again.
func (e *MariaEnv) StopReplication(ctx context.Context, d Direction) error {
	ctx, cancel := context.WithTimeout(ctx, mariaReplTimeout)
	defer cancel()
	if err := e.Target(d).Exec(ctx, "stop slave"); err != nil {
		return fmt.Errorf("%s: stop replication: %w", d, err)
	}
	return e.waitThreads(ctx, d, "No", "No")
}

// CountWhere returns how many rows of table in database db on p have column
// equal to value.
func (p *PG) CountWhere(ctx context.Context, db, table, column, value string) (int64, error) {
	return p.QueryInt(ctx, db, fmt.Sprintf("select count(*) from %s where %s = $1",
		pgx.Identifier{table}.Sanitize(), pgx.Identifier{column}.Sanitize()), value)
}
