package config

import (
	"strconv"
	"time"

	"github.com/prometheus/common/model"
)

// ParseDuration reads a duration in the Prometheus style: a sequence of
// numbers with units, from ms to y, such as 30s, 5m, 1h30m or 1d.
func ParseDuration(s string) (Duration, error) {
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return Duration(d), nil
}

// Std returns d as a [time.Duration].
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d in the Prometheus style, for example 1h30m or 1d.
func (d Duration) String() string { return model.Duration(d).String() }

// MarshalYAML writes d in the Prometheus style.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes d as a JSON string in the Prometheus style.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(d.String())), nil }

// UnmarshalText reads a duration such as 30s, 5m, 1h30m or 1d. It lets
// encoding/json and other text decoders read a Duration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
