package config

import (
	"errors"
	"fmt"
	"strings"
)

// errBadReference is returned for a ${ that does not start a valid reference.
// It quotes nothing: the text around it may be a password.
var errBadReference = errors.New(
	"invalid ${...} reference: write ${NAME} with NAME matching [A-Za-z_][A-Za-z0-9_]*, " +
		"or $${ for a literal ${")

// expandEnv replaces every ${NAME} in s with the value of the environment
// variable NAME, as given by lookup. $${ stands for a literal ${; every other
// $ (such as the $1 of a SQL bind parameter) is left as it is. Expanded
// values are not expanded again. It also returns the values substituted, so
// that they can be kept out of messages. Errors name the variable but never a
// value.
func expandEnv(s string, lookup func(string) (string, bool)) (string, []string, error) {
	if !strings.Contains(s, "${") {
		return s, nil, nil
	}
	var b strings.Builder
	var used []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), used, nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1] + "${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", nil, errBadReference
		}
		name := s[i+2 : i+2+end]
		if !isEnvName(name) {
			return "", nil, errBadReference
		}
		v, ok := lookup(name)
		if !ok {
			return "", nil, fmt.Errorf("environment variable %q is not set", name)
		}
		b.WriteString(v)
		used = append(used, v)
		s = s[i+3+end:]
	}
}

// isEnvName reports whether name matches [A-Za-z_][A-Za-z0-9_]*.
func isEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}
