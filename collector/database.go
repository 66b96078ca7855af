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
}

// do runs a request and records whether the database answered.
func (d *database) do(ctx context.Context, req db.Request) (db.Response, error) {
	resp, err := d.conn.Do(ctx, req)
	if errors.Is(ctx.Err(), context.Canceled) {
		return resp, err // stopped by a reload or shutdown: says nothing of the database
	}
	if db.Unreachable(err) {
		d.up.Store(upNo)
	} else {
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
