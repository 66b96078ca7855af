package db

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

func TestMySQLSelectAndProbe(t *testing.T) {
	my := needMy(t)
	m := openMy(t, my.DSN("monitor", "", "app"), "Monitor-pw-9")
	resp, err := m.Do(t.Context(), Request{Timeout: 5 * time.Second,
		Select: &Select{Query: "select id, ts from t order by id desc limit 3", MaxRows: 3},
		Probe: &Probe{Query: "select count(*) from t where id = ?",
			IDs: []string{"1", "100000", "100001", "0"}, NumericIDs: true}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"100000", "99999", "99998"}, ids(resp)); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	if !resp.NumericIDs {
		t.Error("a bigint id column was not seen as numeric")
	}
	if ts := resp.Rows[0].TS; time.Since(ts) > time.Hour || time.Since(ts) < 0 {
		t.Errorf("ts = %v, want the row's recent time in UTC", ts)
	}
	want := []Answer{{Present: true}, {Present: true}, {Present: false}, {Present: false}}
	if diff := cmp.Diff(want, resp.Answers); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

func TestMySQLIDShapes(t *testing.T) {
	my := needMy(t)
	ctx := t.Context()
	odd := []string{`it's`, `back\slash`, `"quoted"`, "0123", "ünï", "?", "x'); drop table s; --"}
	for _, id := range odd {
		if err := my.ExecDB(ctx, "app", "insert ignore into s (id) values (?)", id); err != nil {
			t.Fatal(err)
		}
	}
	m := openMy(t, my.DSN("monitor", "Monitor-pw-9", "app"), "")
	probe := append(append([]string{}, odd...), "123", "nope")
	resp, err := m.Do(ctx, Request{Timeout: 5 * time.Second, Probe: &Probe{
		Query: "select count(*) from s where id = ? and '?' = '?' -- the id",
		IDs:   probe}})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range probe {
		want := i < len(odd)
		if resp.Answers[i].Present != want {
			t.Errorf("id %q: present %v, want %v", id, resp.Answers[i].Present, want)
		}
	}
	if n, err := my.QueryInt(ctx, "app", "select count(*) from s"); err != nil || n != int64(len(odd)) {
		t.Errorf("table s has %d rows (%v), want %d: an id changed the statement", n, err, len(odd))
	}

	// An integer column compares as a number, beyond a double's precision.
	big := "9007199254740993"
	if err := my.ExecDB(ctx, "app", "insert ignore into t (id, note) values ("+big+", 'big')"); err != nil {
		t.Fatal(err)
	}
	resp, err = m.Do(ctx, Request{Probe: &Probe{Query: "select count(*) from t where id = ?",
		IDs: []string{big, "9007199254740992"}, NumericIDs: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Answers[0].Present || resp.Answers[1].Present {
		t.Errorf("big ids: %+v, want only %s present", resp.Answers, big)
	}
}

func TestMySQLSelectionIsCapped(t *testing.T) {
	my := needMy(t)
	m := openMy(t, my.DSN("monitor", "Monitor-pw-9", "app"), "")
	resp, err := m.Do(t.Context(), Request{Timeout: 10 * time.Second,
		Select: &Select{Query: "select id from t order by id", MaxRows: 5},
		Probe:  &Probe{Query: "select count(*) from t where id = ?", IDs: []string{"7"}}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"1", "2", "3", "4", "5"}, ids(resp)); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	if len(resp.Answers) != 1 || !resp.Answers[0].Present {
		t.Errorf("the probe after a capped selection: %+v", resp.Answers)
	}
}

func TestMySQLErrors(t *testing.T) {
	my := needMy(t)
	m := openMy(t, my.DSN("monitor", "Monitor-pw-9", "app"), "")
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"bad selector", Request{Select: &Select{Query: "select id from nope", MaxRows: 5}},
			"selector: Error 1146 (42S02): Table 'app.nope' doesn't exist"},
		{"null id", Request{Select: &Select{Query: "select null as id", MaxRows: 5}},
			"selector: selector returned a NULL id"},
		{"bad ts", Request{Select: &Select{Query: "select 1 as id, 'x' as ts", MaxRows: 5}},
			`selector: ts column: cannot read "x" as a time or Unix seconds`},
		{"bad validator after good selector", Request{
			Select: &Select{Query: "select 1 as id", MaxRows: 5},
			Probe:  &Probe{Query: "select count(*) from nope where id = ?", IDs: []string{"1"}}},
			"validator: Error 1146 (42S02): Table 'app.nope' doesn't exist"},
		{"validator no row", Request{Probe: &Probe{Query: "select 1 from t where id = ? and false",
			IDs: []string{"1"}}}, `validator: validator returned NULL for id "1"; it must return a count`},
		{"validator not a count", Request{Probe: &Probe{Query: "select 'yes' from t where id = ?",
			IDs: []string{"1"}}}, `validator: validator returned "yes" for id "1"; it must return a count`},
		{"heartbeat without write permission", Request{Heartbeat: &Heartbeat{
			Table: "s", Origin: "p:a", WriteUS: 1}},
			"heartbeat: Error 1142 (42000): INSERT, UPDATE command denied to user 'monitor'@'127.0.0.1' for table `app`.`s`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Do(t.Context(), tc.req)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got error %v, want %q", err, tc.want)
			}
			if Unreachable(err) {
				t.Errorf("an answer from the server was taken for an unreachable database")
			}
		})
	}
	if _, err := m.Do(t.Context(), Request{Select: &Select{Query: "select 1 as id", MaxRows: 1}}); err != nil {
		t.Errorf("after the errors: %v", err)
	}
}

func TestMySQLStatementTimeout(t *testing.T) {
	my := needMy(t)
	m := openMy(t, my.DSN("monitor", "Monitor-pw-9", "app"), "")
	start := time.Now()
	_, err := m.Do(t.Context(), Request{Timeout: 300 * time.Millisecond,
		Select: &Select{Query: "select count(*) as id from t a, t b", MaxRows: 1}})
	if err == nil || !strings.Contains(err.Error(), "statement timeout") {
		t.Fatalf("got %v, want the server's statement timeout", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("took %v: the statement time limit did not stop the query", took)
	}
	// The server answers with the error while the thread is still
	// cleaning up; give it a moment to leave the process list.
	wctx, wcancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer wcancel()
	if err := my.WaitQueries(wctx, "from t a, t b", 0); err != nil {
		t.Errorf("query left running on the server: %v", err)
	}
}

func TestMySQLCancelStopsServerQuery(t *testing.T) {
	my := needMy(t)
	m := openMy(t, my.DSN("monitor", "Monitor-pw-9", "app"), "")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := m.Do(ctx, Request{Timeout: time.Minute,
		Select: &Select{Query: "select sleep(30) as id", MaxRows: 1}})
	if !errors.Is(err, errTimeout) {
		t.Fatalf("got %v, want a timeout", err)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer wcancel()
	if err := my.WaitQueries(wctx, "sleep(30)", 0); err != nil {
		t.Fatalf("the abandoned query still runs on the server: %v", err)
	}
}

func TestMySQLAccessDeniedAndUnreachable(t *testing.T) {
	my := needMy(t)
	m := openMy(t, my.DSN("monitor", "", "app"), "Wrong-pw-7")
	_, err := m.Do(t.Context(), Request{Select: &Select{Query: "select 1 as id", MaxRows: 1}})
	if err == nil || !Unreachable(err) || !strings.Contains(err.Error(), "Access denied") {
		t.Fatalf("got %v, want access denied, counted as unreachable", err)
	}
	if strings.Contains(err.Error(), "Wrong-pw") {
		t.Errorf("error %q shows the password", err)
	}

	port, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	gone := openMy(t, "monitor:Hunter2-pw@tcp(127.0.0.1:"+itoa(port)+")/app", "")
	_, err = gone.Do(t.Context(), Request{Select: &Select{Query: "select 1 as id", MaxRows: 1}})
	if !Unreachable(err) || strings.Contains(err.Error(), "Hunter2") {
		t.Fatalf("got %v, want unreachable without the password", err)
	}

	if _, err := NewMySQL(MySQLOptions{DSN: "monitor:Hunter2-pw@tcp(127.0.0.1"}); err == nil ||
		strings.Contains(err.Error(), "Hunter2") {
		t.Errorf("bad DSN: got %v, want an error without the password", err)
	}
}

func TestMySQLHeartbeatAndVersions(t *testing.T) {
	my := needMy(t)
	ctx := t.Context()
	if err := my.Exec(ctx, "grant insert, update, create on app.hb to monitor@'%'"); err != nil {
		t.Fatal(err)
	}
	m := openMy(t, my.DSN("monitor", "Monitor-pw-9", "app"), "")
	hb := func(write int64) *Heartbeat {
		return &Heartbeat{Table: "hb", Origin: "pair:east", WriteUS: write, Create: true}
	}
	resp, err := m.Do(ctx, Request{Heartbeat: hb(0)})
	if err == nil || !strings.Contains(err.Error(), "heartbeat: Error 1146") {
		t.Fatalf("reading a missing table: %v %+v, want an error", err, resp)
	}
	for _, us := range []int64{1_700_000_000_000_001, 1_700_000_000_000_002} {
		if _, err := m.Do(ctx, Request{Timeout: time.Second,
			Select:    &Select{Query: "select id from t order by id desc limit 1", MaxRows: 1},
			Heartbeat: hb(us)}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err = m.Do(ctx, Request{Heartbeat: hb(0)})
	if err != nil || !resp.HeartbeatFound || resp.HeartbeatUS != 1_700_000_000_000_002 {
		t.Fatalf("heartbeat read: %+v %v, want the last write", resp, err)
	}

	if err := my.ExecDB(ctx, "app", "insert ignore into s (id, version) values ('v1', 7), ('v2', 8)"); err != nil {
		t.Fatal(err)
	}
	resp, err = m.Do(ctx, Request{
		Select: &Select{Query: "select id, version from s where id like 'v%' order by id", MaxRows: 5},
		Probe: &Probe{Query: "select version from s where id = ?",
			IDs: []string{"v1", "v2", "v3"}, Versions: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Versions || resp.Rows[0].Version != "7" {
		t.Errorf("selection %+v, want versions", resp)
	}
	want := []Answer{{Present: true, Version: "7"}, {Present: true, Version: "8"}, {}}
	if diff := cmp.Diff(want, resp.Answers); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

func TestMySQLOneRoundTripPerRequest(t *testing.T) {
	my := needMy(t)
	cp := newCountingProxy(t, my.Addr())
	m := openMy(t, "monitor:Monitor-pw-9@tcp("+cp.ln.Addr().String()+")/app", "")
	ctx := t.Context()
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = itoa(100000 - i)
	}
	req := Request{Timeout: 5 * time.Second,
		Select: &Select{Query: "select id, ts from t order by id desc limit 100", MaxRows: 100},
		Probe:  &Probe{Query: "select count(*) from t where id = ?", IDs: ids, NumericIDs: true}}
	if _, err := m.Do(ctx, req); err != nil { // connects
		t.Fatal(err)
	}
	for range 3 {
		before := cp.writes.Load()
		resp, err := m.Do(ctx, req)
		if err != nil || len(resp.Answers) != 100 || len(resp.Rows) != 100 {
			t.Fatalf("rows %d answers %d err %v", len(resp.Rows), len(resp.Answers), err)
		}
		if n := cp.writes.Load() - before; n != 1 {
			t.Errorf("a request with a selector and 100 ids took %d round trips, want 1", n)
		}
	}
}

func TestMySQLValidatorsThatAreNoSubquery(t *testing.T) {
	my := needMy(t)
	m := openMy(t, my.DSN("monitor", "Monitor-pw-9", "app"), "")
	for _, v := range []string{
		"select count(*), max(note) from t where id = ?",
		"select count(*) from t where id = ? union all select 1 from t where id < 3",
		"select n from (select count(*) as n from t where id = ?) as x",
	} {
		resp, err := m.Do(t.Context(), Request{Probe: &Probe{Query: v,
			IDs: []string{"5", "0", "7"}, NumericIDs: true}})
		if err != nil {
			t.Errorf("%s: %v", v, err)
			continue
		}
		want := []Answer{{Present: true}, {Present: false}, {Present: true}}
		if diff := cmp.Diff(want, resp.Answers); diff != "" {
			t.Errorf("%s: answers (-want +got):\n%s", v, diff)
		}
	}
}

func TestMySQLNullVersionIsPresent(t *testing.T) {
	my := needMy(t)
	ctx := t.Context()
	for _, q := range []string{
		"create table if not exists nv (id varchar(10) primary key, version int null)",
		"insert ignore into nv values ('n1', null), ('n2', 4)",
	} {
		if err := my.ExecDB(ctx, "app", q); err != nil {
			t.Fatal(err)
		}
	}
	m := openMy(t, my.DSN("monitor", "Monitor-pw-9", "app"), "")
	want := []Answer{{Present: true}, {Present: true, Version: "4"}, {}}
	for _, query := range []string{
		"select version from nv where id = ?",
		// Two columns: run as a UNION ALL, where no row means absent.
		"select version, id from nv where id = ?",
	} {
		resp, err := m.Do(ctx, Request{Probe: &Probe{Query: query,
			IDs: []string{"n1", "n2", "n3"}, Versions: true}})
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if diff := cmp.Diff(want, resp.Answers); diff != "" {
			t.Errorf("%s: a NULL version must read as a row that is there (-want +got):\n%s",
				query, diff)
		}
	}
}
