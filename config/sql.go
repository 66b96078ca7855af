package config

import (
	"fmt"
	"strings"

	"github.com/spengler-dev/spengler/internal/sqlscan"
)

// trimQuery removes surrounding whitespace and trailing semicolons.
func trimQuery(q string) string {
	q = strings.TrimSpace(q)
	for strings.HasSuffix(q, ";") {
		q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	}
	return q
}

// bindParams are the bind parameters found in a query.
type bindParams struct {
	dollars   []string // every $N, as written
	questions int      // number of ? marks
}

// scanParams finds the bind parameters of q, skipping string literals,
// quoted identifiers and comments. mysql selects MySQL's lexical rules
// (backslash escapes, backquotes, # comments); otherwise PostgreSQL's
// (backslash escapes only in E-strings, dollar-quoted strings).
func scanParams(q string, mysql bool) bindParams {
	var p bindParams
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
			p.questions++
			i++
		case c == '$':
			i = p.dollar(q, i, mysql)
		default:
			i++
		}
	}
	return p
}

// dollar handles the $ at q[i]: a $N parameter, a PostgreSQL dollar-quoted
// string, or part of an identifier. It returns where scanning resumes.
func (p *bindParams) dollar(q string, i int, mysql bool) int {
	if i > 0 && isIdentByte(q[i-1]) {
		return i + 1
	}
	j := i + 1
	for j < len(q) && '0' <= q[j] && q[j] <= '9' {
		j++
	}
	if j > i+1 {
		p.dollars = append(p.dollars, q[i:j])
		return j
	}
	if mysql {
		return i + 1
	}
	for j < len(q) && isIdentByte(q[j]) && q[j] != '$' {
		j++
	}
	if j < len(q) && q[j] == '$' {
		tag := q[i : j+1]
		return skipPast(q, j+1, tag)
	}
	return i + 1
}

// skipQuoted returns the index just past the literal opened by the quote at
// q[i]. A doubled quote stands for itself; backslash escapes when escapes is set.
func skipQuoted(q string, i int, quote byte, escapes bool) int {
	for j := i + 1; j < len(q); j++ {
		switch {
		case escapes && q[j] == '\\':
			j++
		case q[j] == quote && j+1 < len(q) && q[j+1] == quote:
			j++
		case q[j] == quote:
			return j + 1
		}
	}
	return len(q)
}

// skipPast returns the index just past the first end at or after q[i], or
// len(q) when there is none.
func skipPast(q string, i int, end string) int {
	k := strings.Index(q[i:], end)
	if k < 0 {
		return len(q)
	}
	return i + k + len(end)
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') ||
		('0' <= c && c <= '9') || c >= 0x80
}

// validatorProblem says what is wrong with the bind parameters of validator
// q, run on the database named db with the given driver; "" when nothing is.
func validatorProblem(q, driver, db string) string {
	p := scanParams(q, driver == DriverMySQL)
	switch driver {
	case DriverPostgres:
		for _, d := range p.dollars {
			if d != "$1" {
				return fmt.Sprintf("validator uses %s: postgres takes only $1, the id", d)
			}
		}
		switch {
		case len(p.dollars) > 0:
			return ""
		case p.questions > 0:
			return fmt.Sprintf("validator uses ? but database %q is postgres, which takes $1", db)
		default:
			return "validator has no bind parameter: postgres takes $1 for the id"
		}
	case DriverMySQL:
		switch {
		case len(p.dollars) > 0:
			return fmt.Sprintf("validator uses %s but database %q is mysql, which takes ?",
				p.dollars[0], db)
		case p.questions == 0:
			return "validator has no bind parameter: mysql takes ? for the id"
		case p.questions > 1:
			return fmt.Sprintf("validator has %d bind parameters: mysql takes one ? for the id",
				p.questions)
		}
	}
	return ""
}

// selectorProblem says what is wrong with the bind parameters of selector q,
// which runs without arguments; "" when nothing is.
func selectorProblem(q, driver string) string {
	p := scanParams(q, driver == DriverMySQL)
	switch {
	case driver == DriverPostgres && len(p.dollars) > 0:
		return fmt.Sprintf("selector uses %s: a selector takes no bind parameters", p.dollars[0])
	case driver == DriverMySQL && p.questions > 0:
		return "selector uses ?: a selector takes no bind parameters"
	}
	return ""
}

// rewriteParam rewrites the id parameter of a validator written for the
// engine from into the form the engine to takes.
func rewriteParam(q, from, to string) string {
	d := sqlscan.Postgres
	param, with := "$1", "?"
	if from == DriverMySQL {
		d, param, with = sqlscan.MySQL, "?", "$1"
	}
	if from == to {
		return q
	}
	return sqlscan.Replace(q, d, param, with)
}
