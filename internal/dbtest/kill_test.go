package dbtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// TestPGKillRestart kills a server of its own mid-query, with a backend
// running: every process of it goes, and Start brings it back with its data.
func TestPGKillRestart(t *testing.T) {
	dbtest.SkipIfMissing(t)
	ctx := t.Context()
	p, err := dbtest.StartPG(ctx, "killed", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := p.Exec(ctx, "create table kept (v int); insert into kept values (42)"); err != nil {
		t.Fatal(err)
	}
	// The server commits asynchronously: a checkpoint after the commit
	// makes the row durable.
	if err := p.Exec(ctx, "checkpoint"); err != nil {
		t.Fatal(err)
	}
	// A backend busy in a query when the server dies.
	go p.Exec(context.Background(), "select pg_sleep(30)")
	if err := p.WaitInt(ctx, "postgres", 1,
		"select count(*) from pg_stat_activity where query = 'select pg_sleep(30)'"); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	kids := children(t, pid)
	if len(kids) == 0 {
		t.Fatal("postmaster has no children")
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, k := range append(kids, pid) {
		if st := processState(k); st != "" && st != "Z" {
			t.Errorf("process %d still there after Kill, state %q", k, st)
		}
	}
	if p.PID() != 0 {
		t.Errorf("PID after Kill = %d, want 0", p.PID())
	}
	if err := queryWithin(p, time.Second); err == nil {
		t.Error("the killed server still answers")
	}
	if err := p.Kill(); err == nil {
		t.Error("Kill of a killed server succeeded")
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := p.QueryInt(ctx, "postgres", "select v from kept"); err != nil || v != 42 {
		t.Errorf("data after crash and restart = %d, %v; want 42", v, err)
	}
}

// TestMariaDBKillRestart kills a server of its own while frozen, and Start
// brings it back with its data.
func TestMariaDBKillRestart(t *testing.T) {
	dbtest.SkipIfMariaDBMissing(t)
	ctx := t.Context()
	m, err := dbtest.StartMariaDB(ctx, "killed", t.TempDir(), 9)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	// The server flushes its log once a second: make this commit durable.
	if err := m.Exec(ctx, "set global innodb_flush_log_at_trx_commit = 1; create database kept; "+
		"create table kept.t (v int) engine=innodb; insert into kept.t values (42)"); err != nil {
		t.Fatal(err)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	pid := m.PID()
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if st := processState(pid); st != "" && st != "Z" {
		t.Errorf("server process %d still there after Kill, state %q", pid, st)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := m.QueryInt(ctx, "kept", "select v from t"); err != nil || v != 42 {
		t.Errorf("data after crash and restart = %d, %v; want 42", v, err)
	}
}
