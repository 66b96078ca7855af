package collector

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spengler-dev/spengler/config"
	"github.com/spengler-dev/spengler/db"
)

// Up states of a database.
const (
	upUnknown int32 = iota
	upYes
	upNo
)

// database is one configured database, shared by every direction naming it.
type database struct {
	name string
	cfg  config.Database
	conn db.DB
	up   atomic.Int32
	// unanswered counts the requests in a row that the database did not
	// answer; lastFailure says why the latest of them failed.
	unanswered  atomic.Int32
	lastFailure atomic.Pointer[string]
	// probing is set while the one request sent to a database that is down
	// finds out whether it answers again.
	probing atomic.Bool
}

// downAfter is how many requests in a row a database must leave unanswered
// before it counts as down. One slow query that runs out of time on a live
// server does not take it down; a server that hangs or is gone leaves every
// request unanswered.
const downAfter = 3

// ErrNotTried is the error of a request that was not sent: its database
// left the requests before it unanswered, and another request is already
// finding out whether it answers again.
var ErrNotTried = errors.New("not tried")

// do runs a request and records whether the database answered.
//
// While the database is down, one request at a time is sent to it; the
// others fail at once with [ErrNotTried] and the reason of the last failure,
// instead of each waiting for its own timeout, and holding a check slot
// meanwhile, on a server that hangs. So every direction that needs the
// database reports it within one interval, and the checks of the other
// databases keep their slots. The first request answered brings it back.
func (d *database) do(ctx context.Context, req db.Request) (db.Response, error) {
	if n := d.unanswered.Load(); n >= downAfter {
		if !d.probing.CompareAndSwap(false, true) {
			why := "unknown"
			if p := d.lastFailure.Load(); p != nil {
				why = *p
			}
			return db.Response{}, fmt.Errorf("%w: the database left its last %d requests unanswered (%s)",
				ErrNotTried, n, why)
		}
		defer d.probing.Store(false)
	}
	resp, err := d.conn.Do(ctx, req)
	if errors.Is(ctx.Err(), context.Canceled) {
		return resp, err // stopped by a reload or shutdown: says nothing of the database
	}
	if db.Unreachable(err) {
		why := err.Error()
		d.lastFailure.Store(&why)
		d.unanswered.Add(1)
		d.up.Store(upNo)
	} else {
		d.unanswered.Store(0)
		d.up.Store(upYes)
	}
	return resp, err
}

// Opener opens a configured database. The default opens real connections.
type Opener func(cfg *config.Database, connectTimeout time.Duration) (db.DB, error)

// Open opens a configured database with the driver it names.
func Open(cfg *config.Database, connectTimeout time.Duration) (db.DB, error) {
	switch cfg.Driver {
	case config.DriverPostgres:
		return db.NewPostgres(db.PostgresOptions{
			DSN:            cfg.DSN.Reveal(),
			Password:       cfg.Password.Reveal(),
			MaxConns:       cfg.MaxConnections,
			ConnectTimeout: connectTimeout,
		})
	case config.DriverMySQL:
		dsn, err := config.MySQLDSN(cfg.DSN.Reveal())
		if err != nil {
			return nil, fmt.Errorf("database %q: %w", cfg.Name, err)
		}
		return db.NewMySQL(db.MySQLOptions{
			DSN:            dsn,
			Password:       cfg.Password.Reveal(),
			MaxConns:       cfg.MaxConnections,
			ConnectTimeout: connectTimeout,
		})
	default:
		return nil, fmt.Errorf("database %q: driver %q is not supported", cfg.Name, cfg.Driver)
	}
}
