package db

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

func ids(resp Response) []string {
	var out []string
	for _, r := range resp.Rows {
		out = append(out, r.ID)
	}
	return out
}

func TestPostgresSelectAndProbe(t *testing.T) {
	pg := needPG(t)
	p := openTest(t, pg.DSN("app"))
	ctx := t.Context()

	resp, err := p.Do(ctx, Request{Timeout: 5 * time.Second,
		Select: &Select{Query: "select id, ts from t order by id desc", MaxRows: 3},
		Probe:  &Probe{Query: "select count(*) from t where id = $1", IDs: []string{"5", "0", "100000"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"100000", "99999", "99998"}, ids(resp)); diff != "" {
		t.Errorf("selected ids (-want +got):\n%s", diff)
	}
	if ts := resp.Rows[0].TS; ts.IsZero() || time.Since(ts) > time.Hour {
		t.Errorf("ts = %v, want the row's time", ts)
	}
	want := []Answer{{Present: true}, {Present: false}, {Present: true}}
	if diff := cmp.Diff(want, resp.Answers); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

func TestPostgresIDShapes(t *testing.T) {
	pg := needPG(t)
	p := openTest(t, pg.DSN("app"))
	ctx := t.Context()
	const uuid = "6f1c1b64-3a39-4b0b-9d4e-9f8f3c7f2a10"
	tests := []struct {
		name, selector, validator string
		want                      string
		absent                    string
	}{
		{"bigint", "select id from t where id = 42", "select count(*) from t where id = $1", "42", "-1"},
		{"uuid", "select id from u", "select count(*) from u where id = $1", uuid,
			"00000000-0000-0000-0000-000000000000"},
		{"text with quotes", `select E'it''s \\ "odd"' as id`,
			`select count(*) from (select E'it''s \\ "odd"' as k) s where k = $1`,
			`it's \ "odd"`, "it"},
		{"numeric", "select 12.50::numeric as id", "select count(*) from (select 12.5::numeric k) s where k = $1",
			"12.50", "12.51"},
		{"parameter used twice", "select id from t where id = 7",
			"select count(*) from t where id = $1 and id between $1 - 1 and $1 + 1", "7", "0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := p.Do(ctx, Request{Select: &Select{Query: tc.selector, MaxRows: 10}})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(resp); len(got) != 1 || got[0] != tc.want {
				t.Fatalf("selected %q, want [%q]", got, tc.want)
			}
			resp, err = p.Do(ctx, Request{Probe: &Probe{Query: tc.validator,
				IDs: []string{tc.want, tc.absent}}})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]Answer{{Present: true}, {Present: false}}, resp.Answers); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPostgresSelectionIsCapped(t *testing.T) {
	pg := needPG(t)
	p := openTest(t, pg.DSN("app"))
	resp, err := p.Do(t.Context(), Request{Select: &Select{
		Query: "select g as id from generate_series(1, 200000) g", MaxRows: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"1", "2", "3", "4", "5"}, ids(resp)); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
}

func TestPostgresErrors(t *testing.T) {
	pg := needPG(t)
	p := openTest(t, pg.DSN("app"))
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"bad selector", Request{Select: &Select{Query: "select id from nope", MaxRows: 5}},
			`selector: ERROR: relation "nope" does not exist (SQLSTATE 42P01)`},
		{"null id", Request{Select: &Select{Query: "select null::int as id", MaxRows: 5}},
			"selector: selector returned a NULL id"},
		{"bad ts", Request{Select: &Select{Query: "select 1 as id, 'x'::text as ts", MaxRows: 5}},
			"selector: ts column has type string; want a timestamp or Unix seconds"},
		{"validator no row", Request{Probe: &Probe{Query: "select 1 from t where id = $1 and false",
			IDs: []string{"1"}}}, `validator: validator returned no row for id "1"`},
		{"validator null", Request{Probe: &Probe{Query: "select null::int from t where id = $1",
			IDs: []string{"1"}}}, `validator: validator returned NULL for id "1"; it must return a count`},
		{"validator not a count", Request{Probe: &Probe{Query: "select 'yes' from t where id = $1",
			IDs: []string{"1"}}}, `validator: validator returned "yes" for id "1"; it must return a count`},
		{"validator bad type", Request{Probe: &Probe{Query: "select count(*) from t where id = $1",
			IDs: []string{"abc"}}}, `validator: ERROR: invalid input syntax for type bigint: "abc" (SQLSTATE 22P02)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Do(t.Context(), tc.req)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got error %v, want %q", err, tc.want)
			}
			if Unreachable(err) {
				t.Errorf("an answer from the server was taken for an unreachable database")
			}
		})
	}
	// The pool is still usable after every error.
	if _, err := p.Do(t.Context(), Request{Select: &Select{Query: "select 1 as id", MaxRows: 1}}); err != nil {
		t.Errorf("after the errors: %v", err)
	}
}

// activeQueries counts the queries of Spengler's running on the server.
func activeQueries(t *testing.T, pg *dbtest.PG, like string) int64 {
	t.Helper()
	n, err := pg.QueryInt(t.Context(), "app", `select count(*) from pg_stat_activity
		where application_name = 'spengler' and state = 'active' and query like $1`, like)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPostgresStatementTimeout(t *testing.T) {
	pg := needPG(t)
	p := openTest(t, pg.DSN("app"))
	start := time.Now()
	_, err := p.Do(t.Context(), Request{Timeout: 300 * time.Millisecond,
		Select: &Select{Query: "select 1 as id from pg_sleep(5)", MaxRows: 1}})
	if err == nil || !strings.Contains(err.Error(), "statement timeout") {
		t.Fatalf("got %v, want the server's statement timeout", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("took %v: the statement timeout did not stop the query", took)
	}
	// The timeout lasts for the request only.
	resp, err := p.Do(t.Context(), Request{Select: &Select{
		Query: "select current_setting('statement_timeout') as id", MaxRows: 1}})
	if err != nil || ids(resp)[0] != "0" {
		t.Errorf("statement_timeout after the request: %v %v, want 0", ids(resp), err)
	}
}

func TestPostgresCancelStopsServerQuery(t *testing.T) {
	pg := needPG(t)
	p := openTest(t, pg.DSN("app"))
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := p.Do(ctx, Request{Timeout: time.Minute,
		Select: &Select{Query: "select 1 as id from pg_sleep(30)", MaxRows: 1}})
	if !errors.Is(err, errTimeout) {
		t.Fatalf("got %v, want a timeout", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for activeQueries(t, pg, "%pg_sleep(30)%") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the cancelled query still runs on the server")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPostgresUnreachable(t *testing.T) {
	port, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPostgres(PostgresOptions{
		DSN: "postgres://nobody@127.0.0.1:" + itoa(port) + "/app?sslmode=disable", Password: "Hunter2-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Do(t.Context(), Request{Select: &Select{Query: "select 1 as id", MaxRows: 1}})
	if !Unreachable(err) {
		t.Fatalf("got %v, want unreachable", err)
	}
	if strings.Contains(err.Error(), "Hunter2") {
		t.Errorf("error %q shows the password", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// countingProxy forwards TCP to a server and counts the client's writes
// that reach it: with a request and its answer in flight one at a time,
// each write is a round trip.
type countingProxy struct {
	ln     net.Listener
	target string
	writes atomic.Int64
	wg     sync.WaitGroup
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &countingProxy{ln: ln, target: target}
	cp.wg.Go(cp.accept)
	t.Cleanup(func() { ln.Close(); cp.wg.Wait() })
	return cp
}

func (cp *countingProxy) accept() {
	for {
		c, err := cp.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", cp.target)
		if err != nil {
			c.Close()
			continue
		}
		cp.wg.Go(func() { io.Copy(c, s); c.Close() })
		cp.wg.Go(func() {
			buf := make([]byte, 1<<16)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					cp.writes.Add(1)
					if _, err := s.Write(buf[:n]); err != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			s.Close()
		})
	}
}

func TestPostgresOneRoundTripPerRequest(t *testing.T) {
	pg := needPG(t)
	cp := newCountingProxy(t, "127.0.0.1:"+itoa(pg.Port))
	p := openTest(t, "postgres://postgres@"+cp.ln.Addr().String()+"/app?sslmode=disable")
	ctx := t.Context()
	req := func() Request {
		ids := make([]string, 100)
		for i := range ids {
			ids[i] = itoa(100000 - i)
		}
		return Request{Timeout: 5 * time.Second,
			Select: &Select{Query: "select id, ts from t order by id desc limit 100", MaxRows: 100},
			Probe:  &Probe{Query: "select count(*) from t where id = $1", IDs: ids}}
	}
	if _, err := p.Do(ctx, req()); err != nil { // connects and prepares
		t.Fatal(err)
	}
	for range 3 {
		before := cp.writes.Load()
		resp, err := p.Do(ctx, req())
		if err != nil || len(resp.Answers) != 100 || len(resp.Rows) != 100 {
			t.Fatalf("rows %d answers %d err %v", len(resp.Rows), len(resp.Answers), err)
		}
		if n := cp.writes.Load() - before; n != 1 {
			t.Errorf("a request with a selector and 100 ids took %d round trips, want 1", n)
		}
	}
	// A connection idle for a while, as between two checks, is not pinged
	// first.
	time.Sleep(1500 * time.Millisecond)
	before := cp.writes.Load()
	if _, err := p.Do(ctx, req()); err != nil {
		t.Fatal(err)
	}
	if n := cp.writes.Load() - before; n != 1 {
		t.Errorf("a request on a connection idle for 1.5s took %d round trips, want 1", n)
	}
}

func TestPostgresRetriesOnConnectionClosedWhileIdle(t *testing.T) {
	pg := needPG(t)
	ctx := t.Context()
	p, err := NewPostgres(PostgresOptions{DSN: pg.DSN("app"), MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	req := Request{Timeout: 5 * time.Second,
		Select: &Select{Query: "select id from t order by id desc limit 3", MaxRows: 3}}
	if _, err := p.Do(ctx, req); err != nil {
		t.Fatal(err)
	}
	// The server closes the idle connection, as it does to every
	// connection when it restarts.
	err = pg.ExecDB(ctx, "app", "select pg_terminate_backend(pid) from pg_stat_activity"+
		" where application_name = 'spengler' and datname = 'app' and state = 'idle'")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	resp, err := p.Do(ctx, req)
	if err != nil || len(resp.Rows) != 3 {
		t.Fatalf("after the server closed the idle connection: %+v %v, want the rows "+
			"from a new connection", resp, err)
	}

	// A request that ends its own connection is sent once more, and the
	// second failure, on a new connection, is the answer.
	_, err = p.Do(ctx, Request{Timeout: 5 * time.Second,
		Select: &Select{Query: "select pg_terminate_backend(pg_backend_pid())::int as id", MaxRows: 1}})
	if err == nil {
		t.Fatal("a request whose connection was terminated under it succeeded")
	}
}

func TestPostgresHeartbeatAndVersions(t *testing.T) {
	pg := needPG(t)
	ctx := t.Context()
	for _, q := range []string{
		"create role hb_monitor login",
		"grant select on t to hb_monitor",
		"create table if not exists vs (id text primary key, version int not null)",
		"insert into vs values ('v1', 7), ('v2', 8) on conflict do nothing",
		"grant select on vs to hb_monitor",
	} {
		if err := pg.ExecDB(ctx, "app", q); err != nil {
			t.Fatal(err)
		}
	}
	p := openTest(t, pg.DSN("app"))
	hb := func(write int64) *Heartbeat {
		return &Heartbeat{Table: "hb", Origin: "pair:east", WriteUS: write, Create: true}
	}
	if _, err := p.Do(ctx, Request{Heartbeat: hb(0)}); err == nil ||
		!strings.Contains(err.Error(), `heartbeat: ERROR: relation "hb" does not exist`) {
		t.Fatalf("reading a missing table: %v, want an error", err)
	}
	for _, us := range []int64{1_700_000_000_000_001, 1_700_000_000_000_002} {
		if _, err := p.Do(ctx, Request{Timeout: time.Second,
			Select:    &Select{Query: "select id from t order by id desc limit 1", MaxRows: 1},
			Heartbeat: hb(us)}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := p.Do(ctx, Request{Probe: &Probe{Query: "select count(*) from t where id = $1",
		IDs: []string{"1"}}, Heartbeat: hb(0)})
	if err != nil || !resp.HeartbeatFound || resp.HeartbeatUS != 1_700_000_000_000_002 ||
		!resp.Answers[0].Present {
		t.Fatalf("heartbeat read: %+v %v, want the last write", resp, err)
	}

	// A monitor without write permission gets a clear error.
	ro := openTest(t, "postgres://hb_monitor@127.0.0.1:"+itoa(pg.Port)+"/app?sslmode=disable")
	_, err = ro.Do(ctx, Request{Select: &Select{Query: "select id from t limit 1", MaxRows: 1},
		Heartbeat: &Heartbeat{Table: "hb", Origin: "x:y", WriteUS: 5}})
	if err == nil || err.Error() != "heartbeat: ERROR: permission denied for table hb (SQLSTATE 42501)" {
		t.Errorf("write without permission: %v", err)
	}

	resp, err = ro.Do(ctx, Request{
		Select: &Select{Query: "select id, version from vs order by id", MaxRows: 5},
		Probe: &Probe{Query: "select version from vs where id = $1",
			IDs: []string{"v1", "v2", "v3"}, Versions: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Versions || resp.Rows[1].Version != "8" {
		t.Errorf("selection %+v, want versions", resp)
	}
	want := []Answer{{Present: true, Version: "7"}, {Present: true, Version: "8"}, {}}
	if diff := cmp.Diff(want, resp.Answers); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

func TestPostgresErrorNamesItsStatement(t *testing.T) {
	pg := needPG(t)
	p := openTest(t, pg.DSN("app"))
	_, err := p.Do(t.Context(), Request{Timeout: time.Second,
		Select:    &Select{Query: "select id from nope", MaxRows: 1},
		Heartbeat: &Heartbeat{Table: "hb_stage", Origin: "a", WriteUS: 3, Create: true}})
	if err == nil || !strings.HasPrefix(err.Error(), `selector: ERROR: relation "nope"`) {
		t.Errorf("bad selector after a heartbeat write: %v, want a selector error", err)
	}
	_, err = p.Do(t.Context(), Request{Timeout: time.Second,
		Select:    &Select{Query: "select id from t limit 1", MaxRows: 1},
		Heartbeat: &Heartbeat{Table: "hb_absent", Origin: "a", WriteUS: 3}})
	if err == nil || !strings.HasPrefix(err.Error(), `heartbeat: ERROR: relation "hb_absent"`) {
		t.Errorf("missing heartbeat table: %v, want a heartbeat error", err)
	}
}

func TestPostgresNullVersionIsPresent(t *testing.T) {
	pg := needPG(t)
	ctx := t.Context()
	for _, q := range []string{
		"create table if not exists nv (id text primary key, version int)",
		"insert into nv values ('n1', null), ('n2', 4) on conflict do nothing",
	} {
		if err := pg.ExecDB(ctx, "app", q); err != nil {
			t.Fatal(err)
		}
	}
	p := openTest(t, pg.DSN("app"))
	resp, err := p.Do(ctx, Request{Probe: &Probe{Query: "select version from nv where id = $1",
		IDs: []string{"n1", "n2", "n3"}, Versions: true}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Answer{{Present: true}, {Present: true, Version: "4"}, {}}
	if diff := cmp.Diff(want, resp.Answers); diff != "" {
		t.Errorf("a NULL version must read as a row that is there (-want +got):\n%s", diff)
	}
}
