// Package sqlscan finds the bind parameters of an SQL query, skipping string
// literals, quoted identifiers and comments, for PostgreSQL and MySQL.
package sqlscan

import "strings"

// Dialect selects the lexical rules of an engine.
type Dialect int

// The dialects: PostgreSQL ($N parameters, dollar-quoted strings, backslash
// escapes only in E-strings) and MySQL (? parameters, backslash escapes,
// backquoted identifiers, # comments).
const (
	Postgres Dialect = iota
	MySQL
)

// Param is one bind parameter in a query.
type Param struct {
	// Offset is where the parameter starts in the query, in bytes.
	Offset int
	// Text is the parameter as written: "$1" or "?".
	Text string
}

// Params returns the bind parameters of q in order: $N markers and ? marks
// outside literals, identifiers and comments. Both kinds are reported
// whatever the dialect, so that a caller can say which one is wrong.
func Params(q string, d Dialect) []Param {
	var out []Param
	mysql := d == MySQL
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'':
			escapes := mysql || (i > 0 && (q[i-1] == 'E' || q[i-1] == 'e') &&
				(i < 2 || !isIdentByte(q[i-2])))
			i = skipQuoted(q, i, '\'', escapes)
		case c == '"':
			i = skipQuoted(q, i, '"', mysql)
		case c == '`' && mysql:
			i = skipQuoted(q, i, '`', false)
		case strings.HasPrefix(q[i:], "--") || (mysql && c == '#'):
			i = skipPast(q, i, "\n")
		case strings.HasPrefix(q[i:], "/*"):
			i = skipPast(q, i+2, "*/")
		case c == '?':
			out = append(out, Param{Offset: i, Text: "?"})
			i++
		case c == '$':
			var p *Param
			p, i = dollar(q, i, mysql)
			if p != nil {
				out = append(out, *p)
			}
		default:
			i++
		}
	}
	return out
}

// Replace returns q with every parameter whose text is param replaced by with.
func Replace(q string, d Dialect, param, with string) string {
	var b strings.Builder
	last := 0
	for _, p := range Params(q, d) {
		if p.Text != param {
			continue
		}
		b.WriteString(q[last:p.Offset])
		b.WriteString(with)
		last = p.Offset + len(p.Text)
	}
	b.WriteString(q[last:])
	return b.String()
}

// dollar handles the $ at q[i]: a $N parameter, a PostgreSQL dollar-quoted
// string, or part of an identifier. It returns the parameter, if any, and
// where scanning resumes.
func dollar(q string, i int, mysql bool) (*Param, int) {
	if i > 0 && isIdentByte(q[i-1]) {
		return nil, i + 1
	}
	j := i + 1
	for j < len(q) && '0' <= q[j] && q[j] <= '9' {
		j++
	}
	if j > i+1 {
		return &Param{Offset: i, Text: q[i:j]}, j
	}
	if mysql {
		return nil, i + 1
	}
	for j < len(q) && isIdentByte(q[j]) && q[j] != '$' {
		j++
	}
	if j < len(q) && q[j] == '$' {
		tag := q[i : j+1]
		return nil, skipPast(q, j+1, tag)
	}
	return nil, i + 1
}

// skipQuoted returns the index just past the quoted run starting at q[i]. A
// doubled quote stays inside; so does a backslash-escaped one when escapes.
func skipQuoted(q string, i int, quote byte, escapes bool) int {
	for j := i + 1; j < len(q); j++ {
		switch {
		case escapes && q[j] == '\\':
			j++
		case q[j] == quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// skipPast returns the index just past the first end at or after i, or the
// end of q.
func skipPast(q string, i int, end string) int {
	if k := strings.Index(q[i:], end); k >= 0 {
		return i + k + len(end)
	}
	return len(q)
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' ||
		'A' <= c && c <= 'Z' || c >= 0x80
}
