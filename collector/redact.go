package collector

import (
	"cmp"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spengler-dev/spengler/config"
)

const redacted = "<secret>"

// kvPassword finds the password of a key=value connection string.
var kvPassword = regexp.MustCompile(`(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// kvUnquote undoes the escapes of a quoted key=value connection string value.
var kvUnquote = strings.NewReplacer(`\\`, `\`, `\'`, `'`)

// redactor takes the secrets out of a text.
type redactor func(string) string

// newRedactor returns a function that replaces every DSN and password of cfg,
// in every form it may take in a driver's message, with a placeholder.
func newRedactor(cfg *config.Config) redactor {
	var secrets []string
	add := func(s string) {
		if s == "" {
			return
		}
		secrets = append(secrets, s, url.QueryEscape(s), url.PathEscape(s))
	}
	for _, d := range cfg.Databases {
		dsn := d.DSN.Reveal()
		add(dsn)
		add(d.Password.Reveal())
		if u, err := url.Parse(dsn); err == nil && u.User != nil {
			pw, _ := u.User.Password()
			add(pw)
		}
		for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
			add(m[1])
			add(strings.Trim(m[1], "'"))
			add(kvUnquote.Replace(strings.Trim(m[1], "'")))
		}
		if pc, err := pgconn.ParseConfig(dsn); err == nil {
			add(pc.Password)
		}
		if mc, err := mysql.ParseDSN(dsn); err == nil {
			add(mc.Passwd)
		}
	}
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	secrets = slices.Compact(secrets)
	if len(secrets) == 0 {
		return func(s string) string { return s }
	}
	pairs := make([]string, 0, 2*len(secrets))
	for _, s := range secrets {
		pairs = append(pairs, s, redacted)
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace
}
