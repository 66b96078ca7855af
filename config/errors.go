package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem found in a configuration file. Its text is
// "FILE:LINE: PATH: MSG", for example
// `spengler.yml:14: pairs[1].right: unknown database "wset" (defined: east, west)`.
// Line is 0 when the problem has no place in the file, and Path is empty when
// it concerns the whole file.
type Error struct {
	File string // the configuration file, as given to Load or Parse
	Line int    // 1-based line of the key, 0 when unknown
	Path string // key path such as pairs[2].left_to_right.validator
	Msg  string // what is wrong and what is allowed; never a secret

	// Err is the underlying cause, when there is one that is safe to expose,
	// such as the fs error of a file that cannot be read.
	Err error
}

// Error returns the problem as "FILE:LINE: PATH: MSG".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errors returns every [*Error] held in err, which may be a single *Error or
// the joined errors returned by [Load] and [Parse]. It returns nil when err
// holds none.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			for _, e := range joined.Unwrap() {
				walk(e)
			}
			return
		}
		var e *Error
		if errors.As(err, &e) {
			out = append(out, e)
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// joinErrors sorts errs by line, drops exact repeats and joins them.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
	seen := make(map[string]bool, len(errs))
	joined := make([]error, 0, len(errs))
	for _, e := range errs {
		if text := e.Error(); !seen[text] {
			seen[text] = true
			joined = append(joined, e)
		}
	}
	return errors.Join(joined...)
}
