package config

import (
	"log/slog"
	"time"
)

// Defaults applied when the file leaves a global setting out.
const (
	DefaultInterval       = 30 * time.Second
	DefaultTimeout        = 10 * time.Second
	DefaultMaxLag         = 2 * time.Minute
	DefaultMaxRows        = 100
	DefaultMaxConnections = 4
)

// Driver names accepted in a database's driver key.
const (
	DriverPostgres = "postgres"
	DriverMySQL    = "mysql"
)

// Direction names, as used in config keys and metric labels.
const (
	LeftToRight = "left_to_right"
	RightToLeft = "right_to_left"
)

// Config is a loaded, validated configuration file.
type Config struct {
	Global    Global               `yaml:"global" json:"global"`
	Databases map[string]*Database `yaml:"databases" json:"databases"`
	Pairs     []*Pair              `yaml:"pairs" json:"pairs"`

	// File is the path the configuration was read from.
	File string `yaml:"-" json:"-"`
}

// Global holds the settings that every pair inherits unless it overrides them.
type Global struct {
	Interval Duration `yaml:"interval" json:"interval"`
	Timeout  Duration `yaml:"timeout" json:"timeout"`
	MaxLag   Duration `yaml:"max_lag" json:"max_lag"`
	MaxRows  int      `yaml:"max_rows" json:"max_rows"`
}

// Database is one named database connection, shared by every pair naming it.
type Database struct {
	Driver       string `yaml:"driver" json:"driver"`
	DSN          Secret `yaml:"dsn" json:"dsn"`
	Password     Secret `yaml:"password" json:"password"`
	PasswordFile string `yaml:"password_file" json:"password_file"`
	// MaxConnections bounds the pool of connections to this database.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`

	// Name is the key of this database in the databases map.
	Name string `yaml:"-" json:"-"`
}

// Pair is two databases whose data Spengler cross-checks.
type Pair struct {
	Name       string   `yaml:"name" json:"name"`
	Left       string   `yaml:"left" json:"left"`
	Right      string   `yaml:"right" json:"right"`
	Selector   string   `yaml:"selector" json:"selector"`
	Validator  string   `yaml:"validator" json:"validator"`
	Directions []string `yaml:"directions" json:"directions"`
	// Heartbeat, when set, makes each check write a heartbeat row on the
	// source and look for it on the target.
	Heartbeat *Heartbeat `yaml:"heartbeat" json:"heartbeat"`

	LeftToRight *DirectionConfig `yaml:"left_to_right" json:"left_to_right"`
	RightToLeft *DirectionConfig `yaml:"right_to_left" json:"right_to_left"`

	// Per-pair overrides of the global settings; zero means inherit.
	Interval Duration `yaml:"interval" json:"interval"`
	Timeout  Duration `yaml:"timeout" json:"timeout"`
	MaxLag   Duration `yaml:"max_lag" json:"max_lag"`
	MaxRows  int      `yaml:"max_rows" json:"max_rows"`

	// Checks are the resolved directions of this pair, filled in by Load:
	// every setting inherited, every query chosen.
	Checks []Direction `yaml:"-" json:"-"`
}

// DirectionConfig holds the per-direction overrides of a pair.
type DirectionConfig struct {
	Selector  string     `yaml:"selector" json:"selector"`
	Validator string     `yaml:"validator" json:"validator"`
	Heartbeat *Heartbeat `yaml:"heartbeat" json:"heartbeat"`
}

// Heartbeat names the table a direction's heartbeat is written to on the
// source and read from on the target: origin (text, primary key) and ts_us
// (bigint, microseconds since the Unix epoch).
type Heartbeat struct {
	Table string `yaml:"table" json:"table"`
	// Create asks Spengler to create the table on the source when it is
	// missing. Without it, Spengler never creates or alters a table.
	Create bool `yaml:"create" json:"create"`
}

// Direction is one fully resolved direction of a pair: what the check engine runs.
type Direction struct {
	Pair      string        // pair name
	Name      string        // LeftToRight or RightToLeft
	Source    string        // name of the source database
	Target    string        // name of the target database
	Selector  string        // SQL run on the source
	Validator string        // SQL run on the target with the id as its parameter
	Interval  time.Duration // how often the direction is checked
	Timeout   time.Duration // bound on one check, all queries together
	MaxLag    time.Duration // how long a row may take to arrive
	MaxRows   int           // ids taken from one selector run
	// SourceValidator is the validator in the source's dialect, run on the
	// source for ids overdue on the target (were they deleted there?). It is
	// Validator when both sides run the same engine; for a mixed pair it is
	// the reverse direction's validator when both directions have the same
	// selector, or else Validator with its parameter rewritten for the
	// source's engine.
	SourceValidator string
	// Heartbeat is the direction's heartbeat table; nil when it has none.
	Heartbeat *Heartbeat
}

// Equal reports whether d and o describe the same check: every setting,
// and the heartbeat by value.
func (d Direction) Equal(o Direction) bool {
	dh, oh := d.Heartbeat, o.Heartbeat
	d.Heartbeat, o.Heartbeat = nil, nil
	if d != o || (dh == nil) != (oh == nil) {
		return false
	}
	return dh == nil || *dh == *oh
}

// Duration is a time.Duration written in the Prometheus style: 30s, 5m, 1h30m, 1d.
type Duration time.Duration

// Secret is a string that never shows itself: not in YAML, JSON, fmt or slog output.
type Secret string

const redacted = "<secret>"

// String returns a placeholder, never the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return s.String() }

// LogValue keeps slog from printing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalYAML writes a placeholder instead of the secret.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON writes a placeholder instead of the secret.
func (s Secret) MarshalJSON() ([]byte, error) {
	return []byte(`"` + s.String() + `"`), nil
}

// Reveal returns the secret itself, for the code that must use it.
func (s Secret) Reveal() string { return string(s) }
