package collector

import (
	"net/url"
	"strings"
	"testing"
	"unicode"

	"github.com/spengler-dev/spengler/config"
)

// FuzzRedactor checks that a password of a configured database, in every
// form a driver's message may quote it (as given, inside its DSN, query- or
// path-escaped), leaves no trace in what the redactor returns. It covers
// the passwords written into a DSN of each form and those given by the
// password key.
func FuzzRedactor(f *testing.F) {
	f.Add(uint8(0), "S3cr3t-pw", "connect to %s failed: %s")
	f.Add(uint8(1), "pa55 w'rd", "server said: password=%s rejected (%s)")
	f.Add(uint8(2), "S3cr3t@pw/x", "Error 1045: Access denied for %s using %s")
	f.Add(uint8(3), "p%2Fw0rd:", "%s%s")
	f.Add(uint8(4), "hunter2!", "dial %s: %s")
	f.Fuzz(func(t *testing.T, form uint8, pw, frame string) {
		if len(pw) < 4 || strings.ContainsFunc(pw, unicode.IsControl) ||
			strings.Contains(frame, pw) || strings.Contains(redacted, pw) ||
			strings.Count(frame, "%s") != 2 {
			t.Skip()
		}
		db := &config.Database{Name: "east"}
		switch form % 5 {
		case 0:
			db.Driver, db.DSN = config.DriverPostgres, config.Secret("postgres://spengler:"+url.PathEscape(pw)+"@east:5432/app")
		case 1:
			db.Driver, db.DSN = config.DriverPostgres, config.Secret("host=east user=spengler password='"+
				strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)+"' dbname=app")
		case 2:
			db.Driver, db.DSN = config.DriverMySQL, config.Secret("spengler:"+pw+"@tcp(east:3306)/app")
		case 3:
			db.Driver, db.DSN = config.DriverMySQL, config.Secret("spengler@tcp(east:3306)/app")
			db.Password = config.Secret(pw)
		default:
			db.Driver, db.DSN = config.DriverPostgres, config.Secret("postgres://spengler@east:5432/app")
			db.Password = config.Secret(pw)
		}
		redact := newRedactor(&config.Config{Databases: map[string]*config.Database{"east": db}})
		for _, form := range []string{pw, db.DSN.Reveal(), url.QueryEscape(pw), url.PathEscape(pw)} {
			msg := strings.Replace(strings.Replace(frame, "%s", form, 1), "%s", pw, 1)
			// A placeholder cannot join the text around it into the password.
			out := strings.ReplaceAll(redact(msg), redacted, "\x00")
			if strings.Contains(out, pw) {
				t.Errorf("redact(%q) = %q: the password %q is still there", msg, out, pw)
			}
		}
	})
}
