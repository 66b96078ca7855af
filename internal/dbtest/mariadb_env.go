package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Accounts a MariaEnv creates on both of its servers.
const (
	// MariaMonitorUser may only select, on every table of database app, from any host.
	MariaMonitorUser = "spengler"
	// MariaMonitorPassword is the password of MariaMonitorUser.
	MariaMonitorPassword = "spengler-monitor-pw"
	// MariaReplUser is the account each server's replica threads log in to the other with.
	MariaReplUser = "repl"
	// MariaReplPassword is the password of MariaReplUser.
	MariaReplPassword = "repl-pw"
)

// mariaEnvTimeout bounds StartMariaEnv when its context has no earlier deadline.
const mariaEnvTimeout = 2 * time.Minute

// mariaReplTimeout bounds the waits of BreakIO, BreakSQL and Heal.
const mariaReplTimeout = 60 * time.Second

// Direction is one direction of a two-way replicating pair A, B.
type Direction int

// The directions of a pair. AToB means rows written on A arrive on B: it is B's
// replica threads that carry it.
const (
	AToB Direction = iota + 1
	BToA
)

// String returns "a_to_b" or "b_to_a".
func (d Direction) String() string {
	switch d {
	case AToB:
		return "a_to_b"
	case BToA:
		return "b_to_a"
	}
	return "direction(" + strconv.Itoa(int(d)) + ")"
}

// MariaEnv is two MariaDB servers replicating to each other (master-master,
// GTID, MASTER_USE_GTID=slave_pos), started together and shared by the tests of
// a package. In database app, table a_rows is written on A and table b_rows on B
// (its ids start above [BRowsStart]); both tables exist on both servers and
// replication carries each to the other side. A has server_id and
// gtid_domain_id 1 and hands out odd auto-increment ids, B has 2 and even ids.
// Both servers have the accounts [MariaMonitorUser] and [MariaReplUser].
type MariaEnv struct {
	A, B *MariaDB
	// Dir is the temporary directory holding the servers, removed by Close.
	Dir string
}

// mariaRowsTable returns the DDL of a table with the harness schema.
func mariaRowsTable(name string, start int64) string {
	return fmt.Sprintf("create table if not exists %s ("+
		"id bigint not null auto_increment primary key, "+
		"payload varchar(255) not null default '', "+
		"created_at timestamp(6) not null default current_timestamp(6)"+
		") engine=InnoDB auto_increment=%d", quoteIdent(name), start)
}

// quoteString quotes s as a MariaDB string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// StartMariaEnv starts a MariaEnv in a new temporary directory: both servers in
// parallel, then the same schema and accounts on each (kept out of the binary
// logs), then replication both ways, and returns once all four replica threads
// run. It first cleans up after earlier test processes that died.
func StartMariaEnv(ctx context.Context) (*MariaEnv, error) {
	if _, err := MariaDBBinaries(); err != nil {
		return nil, err
	}
	reapOrphansOnce.Do(reapOrphans)
	removeStaleEnvDirs()
	ctx, cancel := context.WithTimeout(ctx, mariaEnvTimeout)
	defer cancel()
	dir, err := os.MkdirTemp("", envDirPrefix+strconv.Itoa(os.Getpid())+"-maria-")
	if err != nil {
		return nil, fmt.Errorf("start mariadb env: %w", err)
	}
	e := &MariaEnv{Dir: dir}
	if err := e.start(ctx); err != nil {
		e.Close()
		return nil, fmt.Errorf("start mariadb env: %w", err)
	}
	return e, nil
}

// start starts and connects the servers of e.
func (e *MariaEnv) start(ctx context.Context) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, s := range []struct {
		name string
		id   int
		dst  **MariaDB
	}{{"a", 1, &e.A}, {"b", 2, &e.B}} {
		wg.Go(func() {
			m, err := StartMariaDB(ctx, s.name, e.Dir, s.id)
			if err == nil {
				err = m.ExecDB(ctx, "", mariaEnvSetup())
			}
			mu.Lock()
			defer mu.Unlock()
			if m != nil {
				*s.dst = m
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, d := range []Direction{AToB, BToA} {
		src, dst := e.Source(d), e.Target(d)
		err := dst.Exec(ctx, fmt.Sprintf("change master to master_host=%s, master_port=%d, "+
			"master_user=%s, master_password=%s, master_use_gtid=slave_pos, "+
			"master_connect_retry=1; start slave",
			quoteString(MariaDBHost), src.Port, quoteString(MariaReplUser),
			quoteString(MariaReplPassword)))
		if err != nil {
			return err
		}
	}
	for _, d := range []Direction{AToB, BToA} {
		if err := e.waitThreads(ctx, d, "Yes", "Yes"); err != nil {
			return err
		}
	}
	return nil
}

// mariaEnvSetup is what StartMariaEnv runs on each server before replication
// starts, without binary logging, so that neither server replays the other's.
func mariaEnvSetup() string {
	db := quoteIdent(EnvDB)
	return strings.Join([]string{
		"set sql_log_bin = 0",
		"create database if not exists " + db,
		"use " + db,
		mariaRowsTable(TableA, 1),
		mariaRowsTable(TableB, BRowsStart),
		fmt.Sprintf("create user %s@'127.0.0.1' identified by %s",
			quoteString(MariaReplUser), quoteString(MariaReplPassword)),
		fmt.Sprintf("grant replication slave, replication client on *.* to %s@'127.0.0.1'",
			quoteString(MariaReplUser)),
		fmt.Sprintf("create user %s@'%%' identified by %s",
			quoteString(MariaMonitorUser), quoteString(MariaMonitorPassword)),
		fmt.Sprintf("grant select on %s.* to %s@'%%'", db, quoteString(MariaMonitorUser)),
	}, "; ")
}

// Close stops both servers of e, even a frozen one, and removes e.Dir.
func (e *MariaEnv) Close() {
	var wg sync.WaitGroup
	for _, m := range []*MariaDB{e.A, e.B} {
		if m != nil {
			wg.Go(func() { _ = m.Close() })
		}
	}
	wg.Wait()
	_ = os.RemoveAll(e.Dir)
}

// Source returns the server rows of direction d are written on.
func (e *MariaEnv) Source(d Direction) *MariaDB {
	if d == BToA {
		return e.B
	}
	return e.A
}

// Target returns the server rows of direction d arrive on, whose replica threads
// carry d.
func (e *MariaEnv) Target(d Direction) *MariaDB {
	if d == BToA {
		return e.A
	}
	return e.B
}

// Table returns the table of database app written on the source of d: a_rows for
// AToB, b_rows for BToA.
func (e *MariaEnv) Table(d Direction) string {
	if d == BToA {
		return TableB
	}
	return TableA
}

// MonitorDSN returns the DSN of database app on m for [MariaMonitorUser].
func (e *MariaEnv) MonitorDSN(m *MariaDB) string {
	return m.DSN(MariaMonitorUser, MariaMonitorPassword, EnvDB)
}

// Insert inserts n rows into the table of d on the source of d and returns the
// highest id inserted.
func (e *MariaEnv) Insert(ctx context.Context, d Direction, n int) (int64, error) {
	return e.Source(d).InsertRows(ctx, EnvDB, e.Table(d), n)
}

// WaitReplicated waits until the row with id of the table of d is visible on the
// target of d.
func (e *MariaEnv) WaitReplicated(ctx context.Context, d Direction, id int64) error {
	if err := e.Target(d).WaitRow(ctx, EnvDB, e.Table(d), id); err != nil {
		return fmt.Errorf("%s: %w", d, err)
	}
	return nil
}

// WaitReceived waits until the target of d has received (into its relay log,
// applied or not) every transaction the source of d has written to its binary
// log in its own GTID domain so far.
func (e *MariaEnv) WaitReceived(ctx context.Context, d Direction) error {
	src, dst := e.Source(d), e.Target(d)
	var pos string
	err := src.withConn(ctx, "", func(c *sql.Conn) error {
		return c.QueryRowContext(ctx, "select @@gtid_binlog_pos").Scan(&pos)
	})
	if err != nil {
		return fmt.Errorf("%s: read gtid_binlog_pos: %w", src.Name, err)
	}
	want, ok := gtidSeq(pos, src.ServerID)
	if !ok {
		return nil // nothing written yet
	}
	var last string
	for {
		st, err := dst.SlaveStatus(ctx)
		if err == nil {
			last = st["Gtid_IO_Pos"]
			if got, ok := gtidSeq(last, src.ServerID); ok && got >= want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: wait for %s to receive %d-%d-%d: %w (Gtid_IO_Pos %q, last error: %v)",
				d, dst.Name, src.ServerID, src.ServerID, want, ctx.Err(), last, err)
		case <-time.After(pollInterval):
		}
	}
}

// gtidSeq returns the sequence number of domain in a GTID list such as
// "1-1-42,2-2-7".
func gtidSeq(list string, domain int) (int64, bool) {
	for g := range strings.SplitSeq(list, ",") {
		parts := strings.Split(strings.TrimSpace(g), "-")
		if len(parts) != 3 || parts[0] != strconv.Itoa(domain) {
			continue
		}
		seq, err := strconv.ParseInt(parts[2], 10, 64)
		if err == nil {
			return seq, true
		}
	}
	return 0, false
}

// BreakIO stops the replica I/O thread that carries d (on the target of d) and
// waits until it has stopped: the source's new transactions no longer reach the
// target, while what was received already is still applied.
func (e *MariaEnv) BreakIO(ctx context.Context, d Direction) error {
	ctx, cancel := context.WithTimeout(ctx, mariaReplTimeout)
	defer cancel()
	if err := e.Target(d).Exec(ctx, "stop slave io_thread"); err != nil {
		return fmt.Errorf("%s: break io: %w", d, err)
	}
	return e.waitThreads(ctx, d, "No", "")
}

// BreakSQL stops the replica SQL thread that carries d (on the target of d) and
// waits until it has stopped: the source's new transactions still arrive in the
// target's relay log but are not applied.
func (e *MariaEnv) BreakSQL(ctx context.Context, d Direction) error {
	ctx, cancel := context.WithTimeout(ctx, mariaReplTimeout)
	defer cancel()
	if err := e.Target(d).Exec(ctx, "stop slave sql_thread"); err != nil {
		return fmt.Errorf("%s: break sql: %w", d, err)
	}
	return e.waitThreads(ctx, d, "", "No")
}

// Heal starts the replica threads that carry d (START SLAVE on the target of d)
// and waits until both run and the I/O thread is connected to the source. It is a
// no-op on a healthy direction.
func (e *MariaEnv) Heal(ctx context.Context, d Direction) error {
	ctx, cancel := context.WithTimeout(ctx, mariaReplTimeout)
	defer cancel()
	if err := e.Target(d).Exec(ctx, "start slave"); err != nil {
		return fmt.Errorf("%s: heal: %w", d, err)
	}
	return e.waitThreads(ctx, d, "Yes", "Yes")
}

// waitThreads polls the replica status of the target of d until Slave_IO_Running
// is io and Slave_SQL_Running is sqlThread; an empty want matches anything.
func (e *MariaEnv) waitThreads(ctx context.Context, d Direction, io, sqlThread string) error {
	dst := e.Target(d)
	var st map[string]string
	var err error
	for {
		st, err = dst.SlaveStatus(ctx)
		if err == nil && st != nil &&
			(io == "" || st["Slave_IO_Running"] == io) &&
			(sqlThread == "" || st["Slave_SQL_Running"] == sqlThread) {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%s: wait for replica threads on %s: %w (last error: %w)",
					d, dst.Name, ctx.Err(), err)
			}
			return fmt.Errorf("%s: wait for replica threads on %s (io %q, sql %q): %w; "+
				"Slave_IO_Running %q, Slave_SQL_Running %q, Last_IO_Error %q, Last_SQL_Error %q",
				d, dst.Name, io, sqlThread, ctx.Err(), st["Slave_IO_Running"],
				st["Slave_SQL_Running"], st["Last_IO_Error"], st["Last_SQL_Error"])
		case <-time.After(pollInterval):
		}
	}
}

// SlaveStatus returns the columns of SHOW SLAVE STATUS by name (Slave_IO_Running,
// Slave_SQL_Running, Gtid_IO_Pos, Last_IO_Error, ...), or nil when the server
// replicates from nowhere.
func (m *MariaDB) SlaveStatus(ctx context.Context) (map[string]string, error) {
	var st map[string]string
	err := m.withConn(ctx, "", func(c *sql.Conn) error {
		rows, err := c.QueryContext(ctx, "show slave status")
		if err != nil {
			return fmt.Errorf("%s: show slave status: %w", m.Name, err)
		}
		defer rows.Close()
		cols, err := rows.Columns()
		if err != nil {
			return fmt.Errorf("%s: show slave status: %w", m.Name, err)
		}
		if rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return fmt.Errorf("%s: show slave status: %w", m.Name, err)
			}
			st = make(map[string]string, len(cols))
			for i, c := range cols {
				st[c] = vals[i].String
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: show slave status: %w", m.Name, err)
		}
		return nil
	})
	return st, err
}

// sharedMaria holds the MariaEnv that SharedMariaEnv starts on first use.
var sharedMaria struct {
	once sync.Once
	env  *MariaEnv
	err  error
}

// closeSharedMaria closes the shared MariaEnv if a test started one.
func closeSharedMaria() {
	if sharedMaria.env != nil {
		sharedMaria.env.Close()
	}
}

// SharedMariaEnv returns the MariaEnv shared by the tests of this package,
// starting it on the first call; use it with [Main], which closes it. It skips tb
// when the MariaDB binaries are missing (see [SkipIfMariaDBMissing]) and fails tb
// when the env could not start. Tests using it must leave it as they found it
// (healed, thawed, running) and must not run in parallel with tests that break
// it.
func SharedMariaEnv(tb testing.TB) *MariaEnv {
	tb.Helper()
	SkipIfMariaDBMissing(tb)
	sharedMaria.once.Do(func() {
		start := time.Now()
		sharedMaria.env, sharedMaria.err = StartMariaEnv(context.Background())
		if sharedMaria.err == nil {
			tb.Logf("dbtest: started mariadb env in %s", time.Since(start).Round(time.Millisecond))
		}
	})
	if sharedMaria.err != nil {
		tb.Fatal(sharedMaria.err)
	}
	return sharedMaria.env
}
