package dbtest

import (
	"strings"
	"testing"
)

func TestGTIDSeq(t *testing.T) {
	for _, tc := range []struct {
		list   string
		domain int
		want   int64
		ok     bool
	}{
		{"", 1, 0, false},
		{"1-1-42", 1, 42, true},
		{"1-1-42,2-2-7", 2, 7, true},
		{"1-1-42, 12-2-7", 12, 7, true},
		{"11-1-42", 1, 0, false},
		{"1-1-x", 1, 0, false},
	} {
		got, ok := gtidSeq(tc.list, tc.domain)
		if got != tc.want || ok != tc.ok {
			t.Errorf("gtidSeq(%q, %d) = %d, %v; want %d, %v",
				tc.list, tc.domain, got, ok, tc.want, tc.ok)
		}
	}
}

func TestInstallDBErrors(t *testing.T) {
	out := "Installing MariaDB/MySQL system tables ...\n" +
		"2026-01-01 1 [Warning] something\n" +
		"ERROR: 1051  Unknown table 'mysql.tmp_user_sys'\n" +
		strings.Repeat("help text\n", 1000)
	if got := installDBErrors(out); got != "ERROR: 1051  Unknown table 'mysql.tmp_user_sys'" {
		t.Errorf("installDBErrors picked %q", got)
	}
	if got := installDBErrors("short failure\n"); got != "short failure" {
		t.Errorf("installDBErrors without error lines = %q", got)
	}
}
