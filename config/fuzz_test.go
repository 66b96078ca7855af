package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// fuzzDSN builds a connection string of one of four forms holding the
// password pw: a PostgreSQL URL, a PostgreSQL key=value string, a MySQL
// driver DSN and a mysql:// URL.
func fuzzDSN(form uint8, user, pw, host, tail string) (driver, dsn string) {
	switch form % 4 {
	case 0:
		return DriverPostgres, "postgres://" + user + ":" + pw + "@" + host + "/" + tail
	case 1:
		return DriverPostgres, "host=" + host + " user=" + user + " password=" + pw + " dbname=" + tail
	case 2:
		return DriverMySQL, user + ":" + pw + "@tcp(" + host + ")/" + tail
	default:
		return DriverMySQL, "mysql://" + user + ":" + pw + "@" + host + "/" + tail
	}
}

// plainText reports whether s is valid UTF-8 without control characters, so
// that it survives being written into a YAML file as a JSON string.
func plainText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, unicode.IsControl)
}

// secretLike reports whether pw is a password that no error message could
// show by chance: long enough, with a letter and a digit, and not part of
// the other fields of its connection string.
func secretLike(pw string, others ...string) bool {
	if len(pw) < 6 || !strings.ContainsFunc(pw, unicode.IsDigit) || !strings.ContainsFunc(pw, unicode.IsLetter) {
		return false
	}
	for _, o := range others {
		if strings.Contains(o, pw) {
			return false
		}
	}
	return true
}

// FuzzSecretsStayHidden checks that a password, whether written into the
// DSN or given by the password key, shows neither in the error of a file
// that fails to load nor in any rendering of a file that loads: fmt, JSON,
// YAML-through-String and slog.
func FuzzSecretsStayHidden(f *testing.F) {
	f.Add(uint8(0), "spengler", "S3cr3t-pw", "db.example.com:5432", "app?sslmode=disable")
	f.Add(uint8(0), "u", "pa55:w@rd", "h:x", "db")
	f.Add(uint8(0), "u", "pa55%zz", "h", "db")
	f.Add(uint8(1), "spengler", "S3cr3t'pw", "db.example.com", "app port=abc")
	f.Add(uint8(1), "spengler", "'S3cr3t pw'", "h", "app sslmode=nope")
	f.Add(uint8(2), "spengler", "S3cr3t@pw", "db:3306", "app?tls=maybe")
	f.Add(uint8(2), "spengler", "S3/cr3t", "db:3306", "app")
	f.Add(uint8(3), "spengler", "S3cr3t/pw", "db:3306", "app")
	f.Add(uint8(3), "spengler", "p%2Fw0rd", "db:x", "app")
	f.Fuzz(func(t *testing.T, form uint8, user, pw, host, tail string) {
		if !plainText(user+pw+host+tail) || !secretLike(pw, user, host, tail) {
			t.Skip()
		}
		driver, dsn := fuzzDSN(form, user, pw, host, tail)
		bind := "$1"
		if driver == DriverMySQL {
			bind = "?"
		}
		quote := func(s string) string {
			b, _ := json.Marshal(s)
			return string(b)
		}
		_, plainDSN := fuzzDSN(form, user, "", host, tail)
		text := fmt.Sprintf(`databases:
  a: {driver: %[1]s, dsn: %[2]s}
  b: {driver: %[1]s, dsn: %[3]s, password: %[4]s}
pairs:
  - {name: p, left: a, right: b, selector: select id from t, validator: %[5]s}
`, driver, quote(dsn), quote(plainDSN), quote(pw), quote("select count(*) from t where id = "+bind))

		c, err := Parse([]byte(text), "fuzz.yml")
		if err != nil {
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error shows the password %q: %v", pw, err)
			}
			return
		}
		var logged bytes.Buffer
		slog.New(slog.NewTextHandler(&logged, nil)).Info("loaded", "config", c, "db", c.Databases["a"])
		js, _ := json.Marshal(c)
		for what, out := range map[string]string{
			"String": c.String(),
			"%+v":    fmt.Sprintf("%+v %+v", *c.Databases["a"], *c.Databases["b"]),
			"%#v":    fmt.Sprintf("%#v %#v", *c.Databases["a"], *c.Databases["b"]),
			"JSON":   string(js),
			"slog":   logged.String(),
		} {
			if strings.Contains(out, pw) {
				t.Errorf("%s shows the password %q:\n%s", what, pw, out)
			}
		}
	})
}
