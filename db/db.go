// Package db runs Spengler's queries against the databases of a pair: one
// round trip per request, whatever the number of ids it asks about.
package db

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Request is the work one check does on one database, sent in one round trip.
type Request struct {
	// Timeout is the server-side statement timeout for the request's queries.
	// Zero leaves the server's setting alone.
	Timeout time.Duration
	// Select, when set, runs a selector.
	Select *Select
	// Probe, when set, runs a validator once per id.
	Probe *Probe
	// Heartbeat, when set, writes or reads a heartbeat row.
	Heartbeat *Heartbeat
}

// Heartbeat is the write or the read of one origin's row in a heartbeat
// table (origin text primary key, ts_us bigint not null).
type Heartbeat struct {
	Table  string
	Origin string
	// WriteUS, when not zero, is written to the row (an upsert); when zero
	// the row is read.
	WriteUS int64
	// Create creates the table when it is missing, before the first write.
	Create bool
}

// Select is a selector query and how many of its rows to take.
type Select struct {
	Query   string
	MaxRows int
}

// Probe is a validator query with one bind parameter, asked about each of IDs.
type Probe struct {
	Query string
	IDs   []string
	// NumericIDs tells that the ids come from an integer column, so that an
	// engine that compares text and numbers loosely gets numbers.
	NumericIDs bool
	// Versions makes the validator's first column a row version rather than
	// a count: a row back means present, no row means absent.
	Versions bool
}

// Response holds what a Request returned.
type Response struct {
	// Rows are the selected rows, newest first, at most MaxRows.
	Rows []Row
	// Answers has one entry per probed id, in the order of Probe.IDs.
	Answers []Answer
	// NumericIDs is true when the selector's id column has an integer type.
	NumericIDs bool
	// Versions is true when the selector has a column named version.
	Versions bool
	// HeartbeatUS is the heartbeat read, when the row was found.
	HeartbeatUS    int64
	HeartbeatFound bool
}

// Row is one row returned by a selector.
type Row struct {
	// ID is the text form of the first column.
	ID string
	// TS is the row's own time, from a column named ts; zero when absent.
	TS time.Time
	// Version is the text of a column named version; empty when absent or NULL.
	Version string
}

// Answer is what a validator said about one id.
type Answer struct {
	// Present is true when the count in the first column is above zero, or,
	// for a probe of versions, when the validator returned a row.
	Present bool
	// Version is the target's version of the row, for a probe of versions.
	Version string
}

// DB is one configured database. Implementations are safe for concurrent use.
type DB interface {
	// Do runs a request in one round trip.
	Do(ctx context.Context, req Request) (Response, error)
	// Close releases the database's connections.
	Close()
}

// Stage names the part of a request that failed.
type Stage string

// Stages of a request.
const (
	StageConnect   Stage = "connect"
	StageSelect    Stage = "selector"
	StageValidate  Stage = "validator"
	StageHeartbeat Stage = "heartbeat"
)

// Error is a failed request. Its text never holds a password or a DSN.
type Error struct {
	Stage Stage
	// Unreachable is true when the database did not answer at all (no
	// connection, a timeout, a broken connection), as opposed to answering
	// with an SQL error.
	Unreachable bool
	Err         error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Stage, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// Unreachable reports whether err means the database could not be reached.
func Unreachable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Unreachable
}

// ErrNullID is returned when a selector gives a NULL id.
var ErrNullID = errors.New("selector returned a NULL id")
