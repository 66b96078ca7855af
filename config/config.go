package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Load reads the configuration file at path, expands ${NAME} references to
// environment variables, decodes it strictly, applies the defaults and
// validates it. On failure it returns nil and every problem found, joined
// with [errors.Join] and sorted by line; each is an [*Error], and [Errors]
// lists them.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		reason := err
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			reason = pathErr.Err
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read file: %v", reason), Err: err}
	}
	return Parse(data, path)
}

// Parse does what [Load] does, with the file's contents given as data. file
// names the file in error messages and is the base of relative
// password_file paths; it may be empty.
func Parse(data []byte, file string) (*Config, error) {
	return parse(data, file, os.LookupEnv)
}

func parse(data []byte, file string, lookup func(string) (string, bool)) (*Config, error) {
	s := newSource(file, lookup)
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, joinErrors([]*Error{syntaxError(file, err)})
	}
	c := &Config{File: file}
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		s.decode(root.Content[0], reflect.ValueOf(c).Elem(), "")
	}
	s.validate(c)
	if err := joinErrors(s.errs); err != nil {
		return nil, err
	}
	return c, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError turns an error of the YAML parser into an *Error carrying its line.
func syntaxError(file string, err error) *Error {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else if len(msg) > len("yaml: ") && msg[:len("yaml: ")] == "yaml: " {
		msg = msg[len("yaml: "):]
	}
	return &Error{File: file, Line: line, Msg: msg}
}

// Database returns the database called name, or nil when there is none.
func (c *Config) Database(name string) *Database {
	return c.Databases[name]
}

// Pair returns the pair called name, or nil when there is none.
func (c *Config) Pair(name string) *Pair {
	for _, p := range c.Pairs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Checks returns the resolved directions of every pair, in file order.
func (c *Config) Checks() []Direction {
	var out []Direction
	for _, p := range c.Pairs {
		out = append(out, p.Checks...)
	}
	return out
}

// String returns the configuration as YAML, defaults filled in, with every
// password and DSN shown as "<secret>".
func (c *Config) String() string {
	out, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Sprintf("<config: %v>", err)
	}
	return string(out)
}

// LogValue describes the configuration in logs by its file and the names of
// its databases and pairs; it shows no secret.
func (c *Config) LogValue() slog.Value {
	dbs := make([]string, 0, len(c.Databases))
	for name := range c.Databases {
		dbs = append(dbs, name)
	}
	pairs := make([]string, 0, len(c.Pairs))
	for _, p := range c.Pairs {
		pairs = append(pairs, p.Name)
	}
	slices.Sort(dbs)
	return slog.GroupValue(
		slog.String("file", c.File),
		slog.Any("databases", dbs),
		slog.Any("pairs", pairs),
	)
}

// PasswordValue returns the password to connect with: the password key, or
// the contents of password_file (read by Load, trailing newline removed).
// It is "" when neither is set, in which case the DSN may carry a password.
// Callers must not log or display it.
func (d *Database) PasswordValue() string {
	return d.Password.Reveal()
}
