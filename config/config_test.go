package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// goodConfig is what testdata/good.yml and testdata/good.json decode to.
func goodConfig(file string) *Config {
	const (
		ordersSel  = "select id, created_at as ts from orders order by id desc limit 50"
		ordersVal  = "select count(*) from orders where id = $1"
		eventsSel  = "select id from events order by id desc limit 10"
		eventsVal  = "select count(*) from events where id = $1"
		custSel    = "select id from customers order by id desc limit 20"
		custSel5   = "select id from customers order by id desc limit 5"
		custVal    = "select count(*) from customers where id = $1"
		custValMy  = "select count(*) from customers where id = ? and note <> '$1'"
		mysqlSel   = "select id from t order by id desc limit 5"
		mysqlVal   = "select count(*) from t where id = ?"
		minute     = time.Minute
		globalLag  = 5 * time.Minute
		globalTime = 15 * time.Second
	)
	both := []string{LeftToRight, RightToLeft}
	return &Config{
		File: file,
		Global: Global{
			Interval: Duration(minute), Timeout: Duration(globalTime),
			MaxLag: Duration(globalLag), MaxRows: 50,
		},
		Databases: map[string]*Database{
			"east": {
				Name: "east", Driver: DriverPostgres,
				DSN:          "postgres://spengler@east.example.com:5432/app?sslmode=disable",
				Password:     "east-password",
				PasswordFile: "east.secret", MaxConnections: DefaultMaxConnections,
			},
			"west": {
				Name: "west", Driver: DriverPostgres,
				DSN: "host=west.example.com port=5432 user=spengler dbname=app " +
					"sslmode=disable",
				Password: "west-pw", MaxConnections: 8,
			},
			"dc2": {
				Name: "dc2", Driver: DriverMySQL,
				DSN:      "spengler@tcp(dc2.example.com:3306)/app?parseTime=true",
				Password: "dc2-pw", MaxConnections: DefaultMaxConnections,
			},
			"dc3": {
				Name: "dc3", Driver: DriverMySQL,
				DSN:            "mysql://spengler@dc3.example.com/app?parseTime=true",
				MaxConnections: DefaultMaxConnections,
			},
		},
		Pairs: []*Pair{
			{
				Name: "orders", Left: "east", Right: "west",
				Selector: ordersSel, Validator: ordersVal, Directions: both,
				Interval: Duration(minute), Timeout: Duration(globalTime),
				MaxLag: Duration(globalLag), MaxRows: 50,
				Checks: []Direction{
					{"orders", LeftToRight, "east", "west", ordersSel, ordersVal,
						minute, globalTime, globalLag, 50, ordersVal, nil},
					{"orders", RightToLeft, "west", "east", ordersSel, ordersVal,
						minute, globalTime, globalLag, 50, ordersVal, nil},
				},
			},
			{
				Name: "stream", Left: "east", Right: "west",
				Selector: eventsSel, Validator: eventsVal, Directions: []string{LeftToRight},
				Interval: Duration(10 * time.Second), Timeout: Duration(5 * time.Second),
				MaxLag: Duration(30 * time.Second), MaxRows: 10,
				Checks: []Direction{
					{"stream", LeftToRight, "east", "west", eventsSel, eventsVal,
						10 * time.Second, 5 * time.Second, 30 * time.Second, 10, eventsVal, nil},
				},
			},
			{
				Name: "cdc:customers", Left: "east", Right: "dc2",
				Selector: custSel, Validator: custVal, Directions: both,
				LeftToRight: &DirectionConfig{Validator: custValMy},
				RightToLeft: &DirectionConfig{Selector: custSel5},
				Interval:    Duration(minute), Timeout: Duration(globalTime),
				MaxLag: Duration(globalLag), MaxRows: 50,
				// The selectors differ: each direction's own validator,
				// rewritten, re-checks the source.
				Checks: []Direction{
					{"cdc:customers", LeftToRight, "east", "dc2", custSel, custValMy,
						minute, globalTime, globalLag, 50,
						"select count(*) from customers where id = $1 and note <> '$1'", nil},
					{"cdc:customers", RightToLeft, "dc2", "east", custSel5, custVal,
						minute, globalTime, globalLag, 50,
						"select count(*) from customers where id = ?", nil},
				},
			},
			{
				Name: "mysql-pair", Left: "dc2", Right: "dc3",
				Selector: mysqlSel, Validator: mysqlVal, Directions: []string{RightToLeft},
				Interval: Duration(minute), Timeout: Duration(globalTime),
				MaxLag: Duration(globalLag), MaxRows: 50,
				Checks: []Direction{
					{"mysql-pair", RightToLeft, "dc3", "dc2", mysqlSel, mysqlVal,
						minute, globalTime, globalLag, 50, mysqlVal, nil},
				},
			},
		},
	}
}

func setGoodEnv(t *testing.T) {
	t.Setenv("WEST_PASSWORD", "west-pw")
	t.Setenv("DC2_PASSWORD", "dc2-pw")
}

func TestLoadGood(t *testing.T) {
	for _, file := range []string{"testdata/good.yml", "testdata/good.json"} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			setGoodEnv(t)
			got, err := Load(file)
			if err != nil {
				t.Fatalf("Load(%q): %v", file, err)
			}
			if diff := cmp.Diff(goodConfig(file), got); diff != "" {
				t.Errorf("Load(%q) mismatch (-want +got):\n%s", file, diff)
			}
		})
	}
}

// minimal is a valid file that sets nothing it does not have to.
const minimal = `
databases:
  a: {driver: postgres, dsn: "host=a"}
  b: {driver: mysql, dsn: "u@tcp(b:3306)/app"}
pairs:
  - name: p
    left: a
    right: b
    selector: select id from t
    validator: select count(*) from t where id = ?
    right_to_left:
      validator: select count(*) from t where id = $1
`

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse([]byte(text), "test.yml")
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

func TestParseDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	wantGlobal := Global{
		Interval: Duration(DefaultInterval), Timeout: Duration(DefaultTimeout),
		MaxLag: Duration(DefaultMaxLag), MaxRows: DefaultMaxRows,
	}
	if diff := cmp.Diff(wantGlobal, c.Global); diff != "" {
		t.Errorf("global mismatch (-want +got):\n%s", diff)
	}
	for name, db := range c.Databases {
		if db.MaxConnections != DefaultMaxConnections || db.Name != name {
			t.Errorf("database %q: MaxConnections %d, Name %q", name, db.MaxConnections, db.Name)
		}
	}
	p := c.Pairs[0]
	if diff := cmp.Diff([]string{LeftToRight, RightToLeft}, p.Directions); diff != "" {
		t.Errorf("directions mismatch (-want +got):\n%s", diff)
	}
	want := []Direction{
		{"p", LeftToRight, "a", "b", "select id from t", "select count(*) from t where id = ?",
			DefaultInterval, DefaultTimeout, DefaultMaxLag, DefaultMaxRows,
			"select count(*) from t where id = $1", nil},
		{"p", RightToLeft, "b", "a", "select id from t", "select count(*) from t where id = $1",
			DefaultInterval, DefaultTimeout, DefaultMaxLag, DefaultMaxRows,
			"select count(*) from t where id = ?", nil},
	}
	if diff := cmp.Diff(want, p.Checks); diff != "" {
		t.Errorf("checks mismatch (-want +got):\n%s", diff)
	}
}

func TestParseOverrides(t *testing.T) {
	tests := []struct {
		name   string
		global string
		pair   string
		want   Direction
	}{
		{
			name: "inherit all",
			want: Direction{Interval: DefaultInterval, Timeout: DefaultTimeout,
				MaxLag: DefaultMaxLag, MaxRows: DefaultMaxRows},
		},
		{
			name:   "inherit from global",
			global: "global: {interval: 1m, timeout: 20s, max_lag: 1h, max_rows: 7}",
			want: Direction{Interval: time.Minute, Timeout: 20 * time.Second,
				MaxLag: time.Hour, MaxRows: 7},
		},
		{
			name:   "override some",
			global: "global: {interval: 1m, timeout: 20s, max_lag: 1h, max_rows: 7}",
			pair:   "max_lag: 1d\n    max_rows: 500",
			want: Direction{Interval: time.Minute, Timeout: 20 * time.Second,
				MaxLag: 24 * time.Hour, MaxRows: 500},
		},
		{
			name: "override all",
			pair: "interval: 1h30m\n    timeout: 90s\n    max_lag: 2h\n    max_rows: 10000",
			want: Direction{Interval: 90 * time.Minute, Timeout: 90 * time.Second,
				MaxLag: 2 * time.Hour, MaxRows: 10000},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.global + `
databases:
  a: {driver: postgres, dsn: "host=a"}
  b: {driver: postgres, dsn: "host=b"}
pairs:
  - name: p
    left: a
    right: b
    directions: [left_to_right]
    selector: select id from t
    validator: select count(*) from t where id = $1
    ` + tc.pair + "\n"
			c := mustParse(t, text)
			want := tc.want
			want.Pair, want.Name, want.Source, want.Target = "p", LeftToRight, "a", "b"
			want.Selector = "select id from t"
			want.Validator = "select count(*) from t where id = $1"
			want.SourceValidator = want.Validator
			if diff := cmp.Diff([]Direction{want}, c.Pairs[0].Checks); diff != "" {
				t.Errorf("checks mismatch (-want +got):\n%s", diff)
			}
			p := c.Pairs[0]
			got := Direction{Interval: p.Interval.Std(), Timeout: p.Timeout.Std(),
				MaxLag: p.MaxLag.Std(), MaxRows: p.MaxRows}
			wantPair := Direction{Interval: want.Interval, Timeout: want.Timeout,
				MaxLag: want.MaxLag, MaxRows: want.MaxRows}
			if diff := cmp.Diff(wantPair, got); diff != "" {
				t.Errorf("pair settings not filled in (-want +got):\n%s", diff)
			}
		})
	}
}

// pairText is a file with one pair between a and b (both postgres); extra is
// indented into the pair.
func pairText(extra string) string {
	return `
databases:
  a: {driver: postgres, dsn: "host=a"}
  b: {driver: postgres, dsn: "host=b"}
pairs:
  - name: p
    left: a
    right: b
` + extra
}

// direction summarises a resolved Direction for comparison.
type direction struct{ Name, Source, Target, Selector, Validator string }

func summarise(ds []Direction) []direction {
	var out []direction
	for _, d := range ds {
		out = append(out, direction{d.Name, d.Source, d.Target, d.Selector, d.Validator})
	}
	return out
}

func TestParseDirections(t *testing.T) {
	const (
		sel       = "    selector: select id from t\n"
		val       = "    validator: select count(*) from t where id = $1\n"
		multiline = "select count(*)\nfrom t where id = $1"
	)
	tests := []struct {
		name  string
		extra string
		want  []direction
	}{
		{
			name:  "default both",
			extra: sel + val,
			want: []direction{
				{LeftToRight, "a", "b", "select id from t", "select count(*) from t where id = $1"},
				{RightToLeft, "b", "a", "select id from t", "select count(*) from t where id = $1"},
			},
		},
		{
			name:  "left to right only",
			extra: "    directions: [left_to_right]\n" + sel + val,
			want: []direction{
				{LeftToRight, "a", "b", "select id from t", "select count(*) from t where id = $1"},
			},
		},
		{
			name:  "right to left only",
			extra: "    directions:\n      - right_to_left\n" + sel + val,
			want: []direction{
				{RightToLeft, "b", "a", "select id from t", "select count(*) from t where id = $1"},
			},
		},
		{
			name:  "listed backwards, checked in order",
			extra: "    directions: [right_to_left, left_to_right]\n" + sel + val,
			want: []direction{
				{LeftToRight, "a", "b", "select id from t", "select count(*) from t where id = $1"},
				{RightToLeft, "b", "a", "select id from t", "select count(*) from t where id = $1"},
			},
		},
		{
			name: "queries per direction",
			extra: "    left_to_right:\n" +
				"      selector: select id from l\n" +
				"      validator: select count(*) from r where id = $1\n" +
				"    right_to_left:\n" +
				"      selector: select id from r\n" +
				"      validator: select count(*) from l where id = $1\n",
			want: []direction{
				{LeftToRight, "a", "b", "select id from l", "select count(*) from r where id = $1"},
				{RightToLeft, "b", "a", "select id from r", "select count(*) from l where id = $1"},
			},
		},
		{
			name: "direction block overrides one query",
			extra: sel + val + "    right_to_left: {selector: select id from r}\n" +
				"    left_to_right: {}\n",
			want: []direction{
				{LeftToRight, "a", "b", "select id from t", "select count(*) from t where id = $1"},
				{RightToLeft, "b", "a", "select id from r", "select count(*) from t where id = $1"},
			},
		},
		{
			name: "queries trimmed",
			extra: "    selector: \"  select id from t ;  ; \"\n" +
				"    validator: |\n      select count(*)\n      from t where id = $1;\n\n",
			want: []direction{
				{LeftToRight, "a", "b", "select id from t", multiline},
				{RightToLeft, "b", "a", "select id from t", multiline},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, pairText(tc.extra))
			if diff := cmp.Diff(tc.want, summarise(c.Pairs[0].Checks)); diff != "" {
				t.Errorf("checks mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseEnvExpansion(t *testing.T) {
	t.Setenv("SPENGLER_TEST_TABLE", "orders")
	t.Setenv("SPENGLER_TEST_PW", "pa$1${x}")
	t.Setenv("SPENGLER_TEST_ROWS", "25")
	c := mustParse(t, `
global:
  max_rows: ${SPENGLER_TEST_ROWS}
databases:
  a: {driver: postgres, dsn: "host=a", password: "${SPENGLER_TEST_PW}"}
  b: {driver: postgres, dsn: "host=b"}
pairs:
  - name: p-${SPENGLER_TEST_TABLE}
    left: a
    right: b
    selector: select id from ${SPENGLER_TEST_TABLE} where note <> '$${literal}' and x = '$$'
    validator: select count(*) from ${SPENGLER_TEST_TABLE} where id = $1 and $name = 1
`)
	got := []string{
		c.Databases["a"].PasswordValue(),
		c.Pairs[0].Name,
		c.Pairs[0].Selector,
		c.Pairs[0].Validator,
		fmt.Sprint(c.Global.MaxRows),
	}
	want := []string{
		"pa$1${x}",
		"p-orders",
		"select id from orders where note <> '${literal}' and x = '$$'",
		"select count(*) from orders where id = $1 and $name = 1",
		"25",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("expansion mismatch (-want +got):\n%s", diff)
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "x", "B_2": "y", "EMPTY": "", "REF": "${A}"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want, err string
		used          []string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "x", used: []string{"x"}},
		{in: "a${A}b${B_2}c", want: "axbyc", used: []string{"x", "y"}},
		{in: "${EMPTY}", want: "", used: []string{""}},
		{in: "${REF}", want: "${A}", used: []string{"${A}"}},
		{in: "$1 $A $name $$ $", want: "$1 $A $name $$ $"},
		{in: "$${A}", want: "${A}"},
		{in: "$${A} ${A}", want: "${A} x", used: []string{"x"}},
		{in: "${UNSET}", err: `environment variable "UNSET" is not set`},
		{in: "${A", err: errBadReference.Error()},
		{in: "${1A}", err: errBadReference.Error()},
		{in: "${}", err: errBadReference.Error()},
		{in: "${A-B}", err: errBadReference.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, used, err := expandEnv(tc.in, lookup)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("expandEnv(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || !slices.Equal(used, tc.used) {
				t.Errorf("expandEnv(%q) = %q, %v, %v; want %q, %v", tc.in, got, used, err,
					tc.want, tc.used)
			}
		})
	}
}

func TestParsePasswordFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name, file, content, want string
	}{
		{name: "trailing newline", file: "a", content: "s3cret\n", want: "s3cret"},
		{name: "crlf", file: "b", content: "s3cret\r\n", want: "s3cret"},
		{name: "no newline", file: "c", content: " s3 cret ", want: " s3 cret "},
		{name: "relative to the config file", file: "d", content: "rel\n", want: "rel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := write(tc.file, tc.content)
			if strings.HasPrefix(tc.name, "relative") {
				ref = tc.file
			}
			text := fmt.Sprintf(`
databases:
  a: {driver: postgres, dsn: "host=a", password_file: %q}
  b: {driver: postgres, dsn: "host=b"}
pairs:
  - {name: p, left: a, right: b, selector: select 1, validator: select $1}
`, ref)
			cfgFile := write("spengler.yml", text)
			c, err := Load(cfgFile)
			if err != nil {
				t.Fatal(err)
			}
			db := c.Database("a")
			if got := db.PasswordValue(); got != tc.want {
				t.Errorf("PasswordValue() = %q, want %q", got, tc.want)
			}
			if db.PasswordFile != ref {
				t.Errorf("PasswordFile = %q, want %q", db.PasswordFile, ref)
			}
		})
	}
}

func TestLoadInvalid(t *testing.T) {
	t.Setenv("SPENGLER_TEST_UNSET", "")
	os.Unsetenv("SPENGLER_TEST_UNSET")
	tests := []struct {
		file string
		want []string
	}{
		{"invalid-unknown-top.yml", []string{
			`6: alerts: unknown key "alerts" (allowed: global, databases, pairs)`,
		}},
		{"invalid-unknown-global.yml", []string{
			`2: global.intervall: unknown key "intervall" ` +
				`(allowed: interval, timeout, max_lag, max_rows)`,
		}},
		{"invalid-unknown-database.yml", []string{
			`5: databases.east.passwd: unknown key "passwd" ` +
				`(allowed: driver, dsn, password, password_file, max_connections)`,
		}},
		{"invalid-unknown-pair.yml", []string{
			`8: pairs[0].selecter: unknown key "selecter" (allowed: name, left, right, ` +
				`selector, validator, directions, heartbeat, left_to_right, right_to_left, interval, ` +
				`timeout, max_lag, max_rows)`,
		}},
		{"invalid-unknown-direction-key.yml", []string{
			`11: pairs[0].right_to_left.validatr: unknown key "validatr" ` +
				`(allowed: selector, validator, heartbeat)`,
		}},
		{"invalid-duration.yml", []string{
			`2: global.interval: expected a duration such as 30s, 5m, 1h30m or 1d, ` +
				`got "5 minutes"`,
			`3: global.timeout: expected a duration such as 30s, 5m, 1h30m or 1d, got "30"`,
		}},
		{"invalid-int.yml", []string{
			`2: global.max_rows: expected an integer, got "lots"`,
			`4: databases.east.max_connections: expected an integer, got "2.5"`,
		}},
		{"invalid-unknown-db-ref.yml", []string{
			`8: pairs[1].right: unknown database "wset" (defined: east, west)`,
		}},
		{"invalid-left-is-right.yml", []string{
			`6: pairs[0].right: left and right must differ, both are "east"`,
		}},
		{"invalid-no-queries.yml", []string{
			`5: pairs[0]: left_to_right has no selector: ` +
				`set selector on the pair or on left_to_right, or give it a heartbeat`,
			`5: pairs[0]: left_to_right has no validator: ` +
				`set validator on the pair or on left_to_right, or give it a heartbeat`,
		}},
		{"invalid-heartbeat.yml", []string{
			`8: pairs[0].heartbeat.table: heartbeat table "hb; drop table x" is not a plain ` +
				`table name: letters, digits and _, optionally schema.table`,
			`9: pairs[1]: left_to_right has a heartbeat and a selector but no validator: ` +
				`data checks need both; set validator on the pair or on left_to_right, ` +
				`or leave out both queries`,
			`9: pairs[1]: right_to_left has a heartbeat and a selector but no validator: ` +
				`data checks need both; set validator on the pair or on right_to_left, ` +
				`or leave out both queries`,
			`13: pairs[1].heartbeat.table: heartbeat needs a table: heartbeat: {table: spengler_heartbeat}`,
		}},
		{"invalid-no-bind.yml", []string{
			`9: pairs[0].validator: validator has no bind parameter: postgres takes $1 for the id`,
		}},
		{"invalid-placeholder.yml", []string{
			`9: pairs[0].validator: validator uses $1 but database "dc2" is mysql, which takes ?`,
			`11: pairs[0].right_to_left.validator: validator uses ? ` +
				`but database "east" is postgres, which takes $1`,
		}},
		{"invalid-duplicate-pair.yml", []string{
			`10: pairs[1].name: duplicate pair name "orders" (first defined at line 5)`,
		}},
		{"invalid-max-lag.yml", []string{
			`2: global.max_lag: max_lag (10s) must not be shorter than interval (30s)`,
		}},
		{"invalid-timeout.yml", []string{
			`8: pairs[0].timeout: timeout (45s) must not exceed interval (30s)`,
			`14: pairs[1].interval: timeout (10s) must not exceed interval (5s)`,
		}},
		{"invalid-password-file.yml", []string{
			`5: databases.east.password_file: cannot read password file "no-such.secret": ` +
				`no such file or directory`,
			`10: databases.west.password_file: password and password_file are mutually ` +
				`exclusive: set one of them`,
		}},
		{"invalid-driver.yml", []string{
			`2: databases.east.driver: unknown driver "oracle" (allowed: postgres, mysql)`,
			`3: databases.west.driver: driver is required (allowed: postgres, mysql)`,
		}},
		{"invalid-dsn.yml", []string{
			`4: databases.east.dsn: cannot parse dsn: invalid port`,
			`7: databases.west.dsn: cannot parse dsn: failed to parse as keyword/value: ` +
				`invalid keyword/value`,
			`10: databases.dc2.dsn: cannot parse dsn: invalid DSN: network address not ` +
				`terminated (missing closing brace)`,
			`13: databases.dc3.dsn: cannot parse dsn: invalid mysql:// url: ` +
				`invalid port ":33o6" after host`,
		}},
		{"invalid-env.yml", []string{
			`5: databases.east.password: environment variable "SPENGLER_TEST_UNSET" is not set`,
			`8: databases.west.dsn: invalid ${...} reference: write ${NAME} with NAME ` +
				`matching [A-Za-z_][A-Za-z0-9_]*, or $${ for a literal ${`,
		}},
		{"invalid-list-for-mapping.yml", []string{
			`2: databases: expected a mapping, got a list`,
		}},
		{"invalid-duplicate-key.yml", []string{
			`4: databases.east: mapping key "east" already defined at line 2`,
		}},
		{"invalid-syntax.yml", []string{
			`1: did not find expected key`,
		}},
		{"invalid-empty.yml", []string{
			`databases: no databases configured`,
			`pairs: no pairs configured`,
		}},
		{"invalid-no-databases.yml", []string{
			`databases: no databases configured`,
			`3: pairs: no pairs configured`,
		}},
		{"invalid-directions.yml", []string{
			`8: pairs[0].directions: must not be empty (allowed: left_to_right, right_to_left)`,
			`14: pairs[1].directions: expected a list, got a string`,
			`23: pairs[2].right_to_left: right_to_left is set but directions does not ` +
				`include it (directions: left_to_right)`,
		}},
		{"invalid-zero.yml", []string{
			`2: global.interval: must be greater than 0`,
			`3: global.max_rows: must be between 1 and 10000, got 0`,
			`5: databases.east.max_connections: must be at least 1, got 0`,
		}},
		{"invalid-many.yml", []string{
			`3: global.timeout: timeout (1m) must not exceed interval (30s)`,
			`6: databases.east.driver: unknown driver "postgress" (allowed: postgres, mysql)`,
			`8: databases.west.dsn: dsn is required`,
			`13: pairs[0].right: unknown database "wset" (defined: east, west)`,
			`14: pairs[0].directions[1]: unknown direction "sideways" ` +
				`(allowed: left_to_right, right_to_left)`,
			`14: pairs[0].directions[2]: duplicate direction "left_to_right"`,
			`17: pairs[0].right_to_left: right_to_left is set but directions does not ` +
				`include it (directions: left_to_right)`,
			`19: pairs[1].name: invalid pair name "bad name": ` +
				`use only letters, digits, '_', '.', ':' and '-'`,
			`22: pairs[1].max_rows: must be between 1 and 10000, got 20000`,
			`24: pairs[1].validator: validator uses $2: postgres takes only $1, the id`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join("testdata", tc.file)
			c, err := Load(file)
			if err == nil {
				t.Fatalf("Load(%q) = %v, want an error", file, c)
			}
			if c != nil {
				t.Errorf("Load(%q) returned a config with its error", file)
			}
			var want []string
			for _, w := range tc.want {
				if w[0] >= '0' && w[0] <= '9' {
					want = append(want, file+":"+w)
				} else {
					want = append(want, file+": "+w)
				}
			}
			if diff := cmp.Diff(strings.Join(want, "\n"), err.Error()); diff != "" {
				t.Errorf("Load(%q) error mismatch (-want +got):\n%s", file, diff)
			}
			if n := len(Errors(err)); n != len(tc.want) {
				t.Errorf("Errors() has %d errors, want %d", n, len(tc.want))
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "S3cret") {
				t.Errorf("error shows a password:\n%v", err)
			}
		})
	}
}

func TestParseEnvValueNotShown(t *testing.T) {
	t.Setenv("SPENGLER_TEST_SECRET", "hunter2")
	text := `
global:
  max_rows: ${SPENGLER_TEST_SECRET}
  interval: ${SPENGLER_TEST_SECRET}
databases:
  a: {driver: "${SPENGLER_TEST_SECRET}", dsn: "host=a", password_file: "${SPENGLER_TEST_SECRET}"}
  b: {driver: postgres, dsn: "host=b port=${SPENGLER_TEST_SECRET}"}
pairs:
  - name: p
    left: a
    right: "${SPENGLER_TEST_SECRET}"
    directions: ["${SPENGLER_TEST_SECRET}"]
    selector: select 1
    validator: select $1
`
	_, err := Parse([]byte(text), "env.yml")
	want := strings.Join([]string{
		`env.yml:3: global.max_rows: expected an integer, got the value from ${...}`,
		`env.yml:4: global.interval: expected a duration such as 30s, 5m, 1h30m or 1d, ` +
			`got the value from ${...}`,
		`env.yml:6: databases.a.driver: unknown driver the value from ${...} ` +
			`(allowed: postgres, mysql)`,
		`env.yml:6: databases.a.password_file: cannot read password file the value from ` +
			`${...}: no such file or directory`,
		`env.yml:7: databases.b.dsn: cannot parse dsn: invalid port`,
		`env.yml:11: pairs[0].right: unknown database the value from ${...} (defined: a, b)`,
		`env.yml:12: pairs[0].directions[0]: unknown direction the value from ${...} ` +
			`(allowed: left_to_right, right_to_left)`,
	}, "\n")
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("error mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadMissingFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nope.yml")
	_, err := Load(file)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load error %v is not fs.ErrNotExist", err)
	}
	want := file + ": cannot read file: no such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("Load error = %v, want %q", err, want)
	}
}

func TestErrors(t *testing.T) {
	_, err := Load("testdata/invalid-timeout.yml")
	errs := Errors(err)
	want := []*Error{
		{File: "testdata/invalid-timeout.yml", Line: 8, Path: "pairs[0].timeout",
			Msg: "timeout (45s) must not exceed interval (30s)"},
		{File: "testdata/invalid-timeout.yml", Line: 14, Path: "pairs[1].interval",
			Msg: "timeout (10s) must not exceed interval (5s)"},
	}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("Errors() mismatch (-want +got):\n%s", diff)
	}
	var first *Error
	if !errors.As(err, &first) || first.Line != 8 {
		t.Errorf("errors.As found %v, want the line 8 error", first)
	}
	if Errors(nil) != nil || Errors(errors.New("other")) != nil {
		t.Error("Errors of nil or of a foreign error is not nil")
	}

	formats := []struct {
		err  Error
		want string
	}{
		{Error{File: "f.yml", Line: 3, Path: "a.b", Msg: "bad"}, "f.yml:3: a.b: bad"},
		{Error{File: "f.yml", Path: "a", Msg: "bad"}, "f.yml: a: bad"},
		{Error{File: "f.yml", Line: 2, Msg: "bad"}, "f.yml:2: bad"},
		{Error{Line: 2, Path: "a", Msg: "bad"}, "line 2: a: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, f := range formats {
		if got := f.err.Error(); got != f.want {
			t.Errorf("Error() = %q, want %q", got, f.want)
		}
	}
}

func TestDSNErrorsHideSecrets(t *testing.T) {
	const pw = "S3cr3t"
	tests := []struct{ driver, dsn string }{
		{DriverPostgres, "postgres://u:" + pw + "@h:x/db"},
		{DriverPostgres, "postgres://u:" + pw + "@h/db?sslmode=bogus"},
		{DriverPostgres, "postgres://u:" + pw + "@h/db?connect_timeout=x"},
		{DriverPostgres, "postgres://u:" + pw + "@h/db?target_session_attrs=" + pw},
		{DriverPostgres, "postgres://u:" + pw + "%zz@h/db"},
		{DriverPostgres, "postgresql://u:" + pw + "/x@h/db"},
		{DriverPostgres, "host=h password=" + pw + " port=abc"},
		{DriverPostgres, "host=h password='" + pw + " port=1"},
		{DriverPostgres, "host=h password=" + pw + " sslmode=nope"},
		{DriverMySQL, "u:" + pw + "@tcp(h:3306/db"},
		{DriverMySQL, "u:" + pw + "@tcp(h:3306)/db?parseTime=maybe"},
		{DriverMySQL, "u:" + pw + "@tcp(h:3306)"},
		{DriverMySQL, "u:" + pw + "@foo/db"},
		{DriverMySQL, "mysql://u:" + pw + "@h:x/db"},
		{DriverMySQL, "mysql://u:" + pw + "@h/a/b"},
		{DriverMySQL, "mysql://u:" + pw + "%zz@h/db"},
		{DriverMySQL, "mysql://u:S3/cr3t@h/db"},
	}
	for _, tc := range tests {
		t.Run(tc.dsn, func(t *testing.T) {
			msg := dsnProblem(tc.driver, tc.dsn)
			if !strings.HasPrefix(msg, "cannot parse dsn: ") {
				t.Fatalf("dsnProblem(%q) = %q, want a parse error", tc.dsn, msg)
			}
			for _, secret := range []string{pw, "S3/cr3t", "S3", tc.dsn} {
				if strings.Contains(msg, secret) {
					t.Errorf("dsnProblem(%q) = %q shows %q", tc.dsn, msg, secret)
				}
			}
		})
	}
}

func TestMySQLDSN(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "u:p@tcp(h:3306)/db?tls=true", want: "u:p@tcp(h:3306)/db?tls=true"},
		{in: "u@unix(/run/mysqld.sock)/db", want: "u@unix(/run/mysqld.sock)/db"},
		{in: "mysql://u@h/db", want: "u@tcp(h:3306)/db"},
		{in: "mysql://u:p%40ss%2F@h:3307/db?tls=true&parseTime=true",
			want: "u:p@ss/@tcp(h:3307)/db?tls=true&parseTime=true"},
		{in: "mysql://u@[::1]:3306/db", want: "u@tcp([::1]:3306)/db"},
		{in: "mysql:///db", want: "/db"},
		{in: "mysql://u@h:x/db", err: `invalid mysql:// url: invalid port ":x" after host`},
		{in: "mysql://u@h/a/b", err: "invalid mysql:// url: the path must be one database name"},
		{in: "u@tcp(h:3306)", err: "invalid DSN: missing the slash separating the database name"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := MySQLDSN(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("MySQLDSN(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("MySQLDSN(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestValidatorProblem(t *testing.T) {
	tests := []struct{ driver, query, want string }{
		{DriverPostgres, "select count(*) from t where id = $1", ""},
		{DriverPostgres, "select count(*) from t where id = $1 or parent = $1", ""},
		{DriverPostgres, "select count(*) from t where doc ? 'k' and id = $1", ""},
		{DriverPostgres, "select count(*) from t where id = '$1'",
			"validator has no bind parameter: postgres takes $1 for the id"},
		{DriverPostgres, "select count(*) from t where id = 1 -- $1",
			"validator has no bind parameter: postgres takes $1 for the id"},
		{DriverPostgres, "select /* $1 */ count(*) from \"$1\" where x = $$ $1 $$",
			"validator has no bind parameter: postgres takes $1 for the id"},
		{DriverPostgres, "select count(*) from t where x = $q$ it's $1 $q$ and id = $1", ""},
		{DriverPostgres, "select count(*) from t where x = E'\\' $2' and id = $1", ""},
		{DriverPostgres, "select count(*) from t where a$1 = 1",
			"validator has no bind parameter: postgres takes $1 for the id"},
		{DriverPostgres, "select count(*) from t where id = $1 and x = $10",
			"validator uses $10: postgres takes only $1, the id"},
		{DriverPostgres, "select count(*) from t where id = ?",
			`validator uses ? but database "db" is postgres, which takes $1`},
		{DriverMySQL, "select count(*) from t where id = ?", ""},
		{DriverMySQL, "select count(*) from t where id = ? and x = '?' and `?` = \"?\"", ""},
		{DriverMySQL, "select count(*) from t where x = 'it\\'s ?' and id = ? # ?", ""},
		{DriverMySQL, "select count(*) from t where id = $1",
			`validator uses $1 but database "db" is mysql, which takes ?`},
		{DriverMySQL, "select count(*) from t where id = 1",
			"validator has no bind parameter: mysql takes ? for the id"},
		{DriverMySQL, "select count(*) from t where id = ? or parent = ?",
			"validator has 2 bind parameters: mysql takes one ? for the id"},
	}
	for _, tc := range tests {
		t.Run(tc.driver+" "+tc.query, func(t *testing.T) {
			if got := validatorProblem(tc.query, tc.driver, "db"); got != tc.want {
				t.Errorf("validatorProblem(%q) = %q, want %q", tc.query, got, tc.want)
			}
		})
	}
}

func TestParseSelectorBindParameter(t *testing.T) {
	_, err := Parse([]byte(pairText(`    selector: select id from t where id > $1
    validator: select count(*) from t where id = $1
`)), "s.yml")
	want := "s.yml:9: pairs[0].selector: selector uses $1: a selector takes no bind parameters"
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %q", err, want)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"30s", 30 * time.Second, "30s"},
		{"5m", 5 * time.Minute, "5m"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"90m", 90 * time.Minute, "1h30m"},
		{"1d", 24 * time.Hour, "1d"},
		{"250ms", 250 * time.Millisecond, "250ms"},
		{"0", 0, "0s"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			d, err := ParseDuration(tc.in)
			if err != nil || d.Std() != tc.want || d.String() != tc.out {
				t.Fatalf("ParseDuration(%q) = %v (%s), %v; want %v (%s)", tc.in, d.Std(), d, err,
					tc.want, tc.out)
			}
			j, _ := json.Marshal(d)
			y, _ := yaml.Marshal(d)
			if string(j) != `"`+tc.out+`"` || string(y) != tc.out+"\n" {
				t.Errorf("marshalled to JSON %s, YAML %q", j, y)
			}
			var back Duration
			if err := json.Unmarshal(j, &back); err != nil || back != d {
				t.Errorf("JSON round trip gave %v, %v", back, err)
			}
		})
	}
	for _, bad := range []string{"", "30", "5 minutes", "-1s", "1.5h"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded, want an error", bad)
		}
	}
}

func TestConfigAccessors(t *testing.T) {
	setGoodEnv(t)
	c, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if db := c.Database("west"); db == nil || db.Name != "west" {
		t.Errorf("Database(%q) = %v", "west", db)
	}
	if db := c.Database("nope"); db != nil {
		t.Errorf("Database(%q) = %v, want nil", "nope", db)
	}
	if p := c.Pair("stream"); p == nil || p.Name != "stream" {
		t.Errorf("Pair(%q) = %v", "stream", p)
	}
	if p := c.Pair("nope"); p != nil {
		t.Errorf("Pair(%q) = %v, want nil", "nope", p)
	}
	if n := len(c.Checks()); n != 6 {
		t.Errorf("Checks() has %d directions, want 6", n)
	}
}

// TestSecretsNotShown checks that no way of printing a loaded configuration
// shows a password or a DSN.
func TestSecretsNotShown(t *testing.T) {
	setGoodEnv(t)
	c, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"east-password", "west-pw", "dc2-pw"}
	for _, db := range c.Databases {
		secrets = append(secrets, db.DSN.Reveal())
	}
	// Hosts appear only in DSNs.
	secrets = append(secrets, "example.com", "spengler@")

	renders := map[string]func() string{
		"String": c.String,
		"yaml": func() string {
			out, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			return string(out)
		},
		"json": func() string {
			out, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			return string(out)
		},
		"json database": func() string {
			out, err := json.Marshal(c.Database("west"))
			if err != nil {
				t.Fatal(err)
			}
			return string(out)
		},
		"%v":           func() string { return fmt.Sprintf("%v", c) },
		"%+v":          func() string { return fmt.Sprintf("%+v", c) },
		"%#v":          func() string { return fmt.Sprintf("%#v", c) },
		"%+v value":    func() string { return fmt.Sprintf("%+v", *c) },
		"%+v database": func() string { return fmt.Sprintf("%+v", *c.Database("west")) },
		"%#v database": func() string { return fmt.Sprintf("%#v", *c.Database("west")) },
		"%s secret": func() string {
			west := c.Database("west")
			return fmt.Sprintf("%s %v %q %x", west.DSN, west.Password, west.DSN, west.Password)
		},
		"slog text": func() string { return logWith(slog.NewTextHandler, c) },
		"slog json": func() string { return logWith(slog.NewJSONHandler, c) },
	}
	for name, render := range renders {
		t.Run(name, func(t *testing.T) {
			out := render()
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("output shows %q:\n%s", s, out)
				}
			}
		})
	}
	if !strings.Contains(c.String(), "dsn: <secret>") ||
		!strings.Contains(c.String(), "password: <secret>") {
		t.Errorf("String() does not show <secret> placeholders:\n%s", c)
	}
}

func logWith[H slog.Handler](newHandler func(io.Writer, *slog.HandlerOptions) H,
	c *Config) string {
	var buf bytes.Buffer
	logger := slog.New(newHandler(&buf, nil))
	west := c.Database("west")
	logger.Info("loaded", "config", c, "db", west, "db_value", *west, "dsn", west.DSN,
		"password", west.Password, "pair", c.Pairs[0])
	return buf.String()
}

func TestParseAnchorsAndMergeKeys(t *testing.T) {
	c := mustParse(t, `
databases:
  a: &pg {driver: postgres, dsn: "host=a", max_connections: 2}
  b:
    <<: *pg
    dsn: host=b
pairs:
  - &base
    name: one
    left: a
    right: b
    selector: select id from t
    validator: select count(*) from t where id = $1
    directions: [left_to_right]
  - <<: *base
    name: two
    directions: [right_to_left]
`)
	b := c.Database("b")
	if b.Driver != DriverPostgres || b.DSN.Reveal() != "host=b" || b.MaxConnections != 2 {
		t.Errorf("merged database b = %+v", *b)
	}
	got := summarise(c.Checks())
	want := []direction{
		{LeftToRight, "a", "b", "select id from t", "select count(*) from t where id = $1"},
		{RightToLeft, "b", "a", "select id from t", "select count(*) from t where id = $1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("checks mismatch (-want +got):\n%s", diff)
	}
}

func TestParseInvalidInline(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{
			name: "top level list",
			text: "- a\n- b\n",
			want: "in.yml:1: expected a mapping with keys global, databases, pairs, got a list",
		},
		{
			name: "mapping where a list belongs",
			text: "databases: {a: {driver: postgres, dsn: host=a}}\npairs: {name: p}\n",
			want: "in.yml:2: pairs: expected a list, got a mapping",
		},
		{
			name: "scalar pair",
			text: "databases: {a: {driver: postgres, dsn: host=a}}\npairs: [orders]\n",
			want: "in.yml:2: pairs[0]: expected a mapping with keys name, left, right, " +
				"selector, validator, directions, heartbeat, left_to_right, right_to_left, interval, " +
				"timeout, max_lag, max_rows, got a string",
		},
		{
			name: "list for a string",
			text: pairText("    selector: [select 1]\n    validator: select $1\n"),
			want: "in.yml:9: pairs[0].selector: expected a string, got a list",
		},
		{
			name: "json duplicate key",
			text: `{"databases": {"a": {"driver": "postgres", "dsn": "host=a"}},` + "\n" +
				`"pairs": [], "pairs": []}`,
			want: "in.yml:2: pairs: mapping key \"pairs\" already defined at line 2",
		},
		{
			name: "bad merge",
			text: "databases:\n  a:\n    <<: x\n    driver: postgres\n    dsn: host=a\n" +
				"pairs: []\n",
			want: "in.yml:3: databases.a: a merge key (<<) takes a mapping or a list of " +
				"mappings, got a string\n" +
				"in.yml:6: pairs: no pairs configured",
		},
		{
			name: "duplicate top-level key",
			text: pairText("    selector: select 1\n    validator: select $1\n") + "databases:\n",
			want: "in.yml:11: databases: mapping key \"databases\" already defined at line 2",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "in.yml")
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseDatabaseNames(t *testing.T) {
	text := `
databases:
  "east 1": {driver: postgres, dsn: "host=a"}
  west.dc-2_x: {driver: postgres, dsn: "host=b"}
pairs:
  - {name: "p:1.x_y-z", left: "east 1", right: west.dc-2_x, selector: s, validator: v $1}
`
	_, err := Parse([]byte(text), "n.yml")
	want := `n.yml:3: databases.east 1: invalid database name "east 1": ` +
		`use only letters, digits, '_', '.' and '-'`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %q", err, want)
	}
}

func TestErrorsWrapped(t *testing.T) {
	_, err := Load("testdata/invalid-timeout.yml")
	wrapped := fmt.Errorf("load config: %w", err)
	if n := len(Errors(wrapped)); n != 2 {
		t.Errorf("Errors of a wrapped join found %d errors, want 2", n)
	}
}

// FuzzParse checks that no input makes Parse panic, and that every failure
// is reported as *Error values naming the file.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range append(files, "testdata/good.json") {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(minimal))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yml")
		if err == nil {
			if len(c.Checks()) == 0 {
				t.Errorf("Parse succeeded without checks:\n%s", data)
			}
			return
		}
		errs := Errors(err)
		if len(errs) == 0 {
			t.Fatalf("Parse error is not a *config.Error: %v", err)
		}
		for _, e := range errs {
			if e.File != "fuzz.yml" || e.Msg == "" {
				t.Errorf("error without file or message: %#v", e)
			}
		}
	})
}

func TestSourceValidatorOfOneWayMixedPair(t *testing.T) {
	c := mustParse(t, `
databases:
  pg: {driver: postgres, dsn: "host=a"}
  my: {driver: mysql, dsn: "u@tcp(b:3306)/app"}
pairs:
  - name: cdc
    left: pg
    right: my
    directions: [left_to_right]
    selector: select id from t
    validator: select count(*) from t where id = ? and note <> '?'
`)
	got := c.Pairs[0].Checks[0].SourceValidator
	want := "select count(*) from t where id = $1 and note <> '?'"
	if got != want {
		t.Errorf("SourceValidator = %q, want %q", got, want)
	}
}

func TestHeartbeatResolved(t *testing.T) {
	c := mustParse(t, `
databases:
  primary: {driver: postgres, dsn: "host=a"}
  standby: {driver: postgres, dsn: "host=b"}
pairs:
  - name: stream
    left: primary
    right: standby
    directions: [left_to_right]
    heartbeat: {table: spengler_heartbeat}
  - name: both
    left: primary
    right: standby
    selector: select id from t
    validator: select count(*) from t where id = $1
    heartbeat: {table: public.hb_a, create: true}
    right_to_left:
      heartbeat: {table: hb_b}
`)
	stream := c.Pairs[0].Checks
	if len(stream) != 1 || stream[0].Heartbeat == nil || stream[0].Heartbeat.Table != "spengler_heartbeat" ||
		stream[0].Selector != "" || stream[0].Validator != "" {
		t.Errorf("heartbeat-only pair resolved to %+v", stream)
	}
	both := c.Pairs[1].Checks
	if len(both) != 2 {
		t.Fatalf("pair both has %d directions, want 2", len(both))
	}
	if h := both[0].Heartbeat; h == nil || h.Table != "public.hb_a" || !h.Create {
		t.Errorf("left_to_right heartbeat = %+v, want public.hb_a with create", h)
	}
	if h := both[1].Heartbeat; h == nil || h.Table != "hb_b" || h.Create {
		t.Errorf("right_to_left heartbeat = %+v, want hb_b", h)
	}
	if both[1].Selector == "" || both[1].Validator == "" {
		t.Errorf("right_to_left lost its queries: %+v", both[1])
	}
}
