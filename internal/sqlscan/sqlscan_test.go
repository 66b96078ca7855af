package sqlscan

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParams(t *testing.T) {
	tests := []struct {
		name string
		q    string
		d    Dialect
		want []string
	}{
		{"postgres", "select count(*) from t where id = $1", Postgres, []string{"$1"}},
		{"twice", "select $1::int + $1", Postgres, []string{"$1", "$1"}},
		{"in string", "select '$1', 'it''s $1', E'\\'$1' where id = $1", Postgres, []string{"$1"}},
		{"identifier", `select "$1" from t where a$1 = $2`, Postgres, []string{"$2"}},
		{"comments", "select 1 -- $1\n/* $2 */ where x = $3", Postgres, []string{"$3"}},
		{"dollar quote", "select $tag$ $1 $tag$, $$ ? $$ where y = ?", Postgres, []string{"?"}},
		{"mysql", "select count(*) from t where id = ? and n = '?' # ?", MySQL, []string{"?"}},
		{"mysql escapes", `select 'a\'?' , "?", ` + "`?`" + ` where id = ?`, MySQL, []string{"?"}},
		{"mysql dollar", "select count(*) from t where id = $1", MySQL, []string{"$1"}},
		{"none", "select 1", Postgres, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range Params(tc.q, tc.d) {
				got = append(got, p.Text)
				if tc.q[p.Offset:p.Offset+len(p.Text)] != p.Text {
					t.Errorf("offset %d does not point at %q", p.Offset, p.Text)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Params(%q) (-want +got):\n%s", tc.q, diff)
			}
		})
	}
}

func TestReplace(t *testing.T) {
	q := "select count(*) from t where id = $1 and note <> '$1' and k = $1"
	got := Replace(q, Postgres, "$1", "x.id")
	want := "select count(*) from t where id = x.id and note <> '$1' and k = x.id"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
