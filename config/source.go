package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// source is one configuration file being loaded: where each key path was
// found, which values were given, and the errors found so far.
type source struct {
	file   string
	dir    string                      // base for relative password_file paths
	lookup func(string) (string, bool) // environment lookup for ${NAME}

	lines  map[string]int      // key path -> line of the key or list item
	set    map[string]bool     // key paths given a non-null value
	env    map[string][]string // key paths -> values substituted for ${NAME} there
	failed map[string]bool     // key paths whose value could not be decoded
	errs   []*Error
}

func newSource(file string, lookup func(string) (string, bool)) *source {
	s := &source{
		file:   file,
		lookup: lookup,
		lines:  make(map[string]int),
		set:    make(map[string]bool),
		env:    make(map[string][]string),
		failed: make(map[string]bool),
	}
	if file != "" {
		s.dir = filepath.Dir(file)
	}
	return s
}

// decodeError records a problem with the value at path, found while decoding.
// Validation reports nothing more at that path or below it.
func (s *source) decodeError(line int, path, format string, args ...any) {
	s.failed[path] = true
	s.errs = append(s.errs, &Error{
		File: s.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...),
	})
}

// errorf records a problem found by validation at path, on the line where
// path (or the nearest enclosing key) was written. It is dropped when the
// value at path, or around it, already failed to decode.
func (s *source) errorf(path, format string, args ...any) {
	for p := path; ; p = parentPath(p) {
		if s.failed[p] {
			return
		}
		if p == "" {
			break
		}
	}
	s.errs = append(s.errs, &Error{
		File: s.file, Line: s.line(path), Path: path, Msg: fmt.Sprintf(format, args...),
	})
}

// line returns the line of path, or of its nearest enclosing key when path
// itself is not in the file; 0 when none is.
func (s *source) line(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := s.lines[p]; ok {
			return l
		}
	}
	return 0
}

// quote returns v quoted for an error message, unless the value at path came
// from the environment, which may hold a secret: then it says so instead.
func (s *source) quote(path, v string) string {
	if len(s.env[path]) > 0 {
		return "the value from ${...}"
	}
	return fmt.Sprintf("%q", v)
}

// parentPath returns the path enclosing p: "pairs[1]" for "pairs[1].left",
// "pairs" for "pairs[1]", "" for "pairs".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// joinPath returns the path of key inside path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
