package config

import (
	"cmp"
	"errors"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// MySQLDSN returns dsn in the form that the Go MySQL driver
// (github.com/go-sql-driver/mysql) takes, after checking that the driver can
// parse it. A DSN already in that form, user:password@tcp(host:port)/db?params,
// is returned unchanged. A URL, mysql://user:password@host:port/db?params, is
// converted: the port defaults to 3306, user and password are decoded from
// their percent-encoding and the query parameters are kept as they are.
// Errors never include the DSN or its password.
func MySQLDSN(dsn string) (string, error) {
	out := dsn
	if strings.HasPrefix(dsn, "mysql://") {
		var err error
		if out, err = mysqlURLToDSN(dsn); err != nil {
			return "", err
		}
	}
	if _, err := mysql.ParseDSN(out); err != nil {
		return "", errors.New(scrubDSN(err.Error(), out, dsn))
	}
	return out, nil
}

// mysqlURLToDSN converts a mysql:// URL to the Go MySQL driver's form.
func mysqlURLToDSN(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New(scrubDSN("invalid mysql:// url: "+urlReason(err), s))
	}
	db := strings.TrimPrefix(u.EscapedPath(), "/")
	switch {
	case u.Opaque != "":
		return "", errors.New("invalid mysql:// url: want mysql://user@host:port/database")
	case u.Fragment != "":
		return "", errors.New("invalid mysql:// url: # must be percent-encoded as %23")
	case strings.Contains(db, "/"):
		return "", errors.New("invalid mysql:// url: the path must be one database name")
	}

	var b strings.Builder
	if u.User != nil {
		b.WriteString(u.User.Username())
		if pw, ok := u.User.Password(); ok {
			b.WriteString(":" + pw)
		}
		b.WriteString("@")
	}
	if host := u.Hostname(); host != "" {
		port := cmp.Or(u.Port(), "3306")
		b.WriteString("tcp(" + net.JoinHostPort(host, port) + ")")
	}
	b.WriteString("/" + db)
	if u.RawQuery != "" {
		b.WriteString("?" + u.RawQuery)
	}
	return b.String(), nil
}

// dsnProblem says why dsn cannot be used with driver, with the DSN and every
// password scrubbed out of the parser's reason; "" when it can be used.
func dsnProblem(driver, dsn string, secrets ...string) string {
	var reason string
	switch driver {
	case DriverPostgres:
		_, err := pgconn.ParseConfig(dsn)
		if err == nil {
			return ""
		}
		reason = postgresReason(err)
	case DriverMySQL:
		_, err := MySQLDSN(dsn)
		if err == nil {
			return ""
		}
		reason = err.Error()
	default:
		return ""
	}
	return "cannot parse dsn: " + scrubDSN(reason, append([]string{dsn}, secrets...)...)
}

// postgresReason returns the reason pgconn gives for rejecting a connection
// string, without the (partly redacted) connection string it quotes.
func postgresReason(err error) string {
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		return err.Error()
	}
	text := pce.Error()
	cause := pce.Unwrap()
	if cause != nil {
		text = strings.TrimSuffix(text, " ("+cause.Error()+")")
	}
	if i := strings.LastIndex(text, "`: "); i >= 0 {
		text = text[i+len("`: "):]
	}
	if cause == nil {
		return text
	}
	return text + ": " + urlReason(cause)
}

// urlReason returns the reason of a net/url error without the URL it quotes.
// A bad percent-escape is not quoted either: it may be part of a password.
func urlReason(err error) string {
	var escErr url.EscapeError
	if errors.As(err, &escErr) {
		return "invalid percent-encoding: write % as %25"
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err.Error()
	}
	return err.Error()
}

// keywordPassword finds password=... in a key=value connection string.
var keywordPassword = regexp.MustCompile(`(?i)password\s*=\s*('(?:\\.|[^'\\])*'|[^\s&]+)`)

// scrubDSN replaces in msg every DSN given, and every password found in them
// or given directly, with "<secret>". Finding passwords in a DSN that does
// not parse is guesswork, so it guesses generously.
func scrubDSN(msg string, dsns ...string) string {
	var secrets []string
	for _, dsn := range dsns {
		secrets = append(secrets, dsn)
		secrets = append(secrets, guessPasswords(dsn)...)
	}
	var all []string
	for _, s := range secrets {
		all = append(all, s)
		if u, err := url.PathUnescape(s); err == nil {
			all = append(all, u)
		}
		if u, err := url.QueryUnescape(s); err == nil {
			all = append(all, u)
		}
	}
	slices.SortFunc(all, func(a, b string) int { return len(b) - len(a) })
	for _, s := range all {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, redacted)
		}
	}
	return msg
}

// guessPasswords returns what may be passwords in dsn: the text between any
// ':' and an '@' of the part after any scheme, and password=... values.
func guessPasswords(dsn string) []string {
	var out []string
	rest := dsn
	if _, after, ok := strings.Cut(dsn, "://"); ok {
		rest = after
	}
	ats := []int{strings.LastIndex(rest, "@")}
	if slash := strings.LastIndex(rest, "/"); slash >= 0 {
		ats = append(ats, strings.LastIndex(rest[:slash], "@"))
	}
	authority := rest
	if slash := strings.Index(rest, "/"); slash >= 0 {
		authority = rest[:slash]
		ats = append(ats, strings.LastIndex(authority, "@"))
	}
	for _, at := range ats {
		if at < 0 {
			continue
		}
		// Parsers split user and password at different colons when the
		// user holds one: every split is a guess.
		for i, c := range rest[:at] {
			if c == ':' {
				out = append(out, rest[i+1:at])
			}
		}
	}
	if !strings.Contains(authority, "@") && strings.Contains(rest[len(authority):], "@") {
		// A password holding '/' cuts the authority short: mysql://u:pa/ss@h/db.
		if _, pw, ok := strings.Cut(authority, ":"); ok {
			out = append(out, pw)
		}
	}
	for _, m := range keywordPassword.FindAllStringSubmatch(dsn, -1) {
		out = append(out, m[1], strings.Trim(m[1], "'"))
	}
	return out
}
