package db

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresOptions configures a PostgreSQL connection pool.
type PostgresOptions struct {
	// DSN is a libpq connection string or URL.
	DSN string
	// Password, when not empty, replaces any password in the DSN.
	Password string
	// MaxConns bounds the pool.
	MaxConns int
	// ConnectTimeout bounds establishing one connection.
	ConnectTimeout time.Duration
}

// Postgres is a pool of connections to one PostgreSQL database.
//
// Every request goes out as one multi-statement simple-protocol query: the
// statement timeout, the selector and every validator call travel in one
// message and come back in one round trip, inside one implicit transaction.
type Postgres struct {
	pool *pgxpool.Pool
}

// NewPostgres prepares a pool. It does not connect: connections are made on
// first use, so an unreachable database does not delay start-up.
func NewPostgres(opts PostgresOptions) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, errors.New("cannot parse dsn")
	}
	if opts.Password != "" {
		cfg.ConnConfig.Password = opts.Password
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "spengler"
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	if opts.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = int32(min(opts.MaxConns, math.MaxInt32))
	}
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = 5 * time.Minute
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Close closes every connection of the pool.
func (p *Postgres) Close() { p.pool.Close() }

// Do runs req in one round trip.
func (p *Postgres) Do(ctx context.Context, req Request) (Response, error) {
	b := &pgx.Batch{}
	if req.Timeout > 0 {
		ms := max(req.Timeout.Milliseconds(), 1)
		b.Queue("set local statement_timeout = " + strconv.FormatInt(ms, 10))
	}
	if req.Select != nil {
		b.Queue(req.Select.Query)
	}
	if req.Probe != nil {
		for _, id := range req.Probe.IDs {
			b.Queue(req.Probe.Query, id)
		}
	}

	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return Response{}, pgError(ctx, StageConnect, err)
	}
	defer conn.Release()

	br := conn.SendBatch(ctx, b)
	resp, err := readBatch(ctx, br, req)
	closeErr := br.Close()
	if err == nil && closeErr != nil {
		err = pgError(ctx, StageValidate, closeErr)
	}
	if err != nil {
		if Unreachable(err) {
			// The connection may be half-way through a response: drop it.
			conn.Conn().PgConn().Close(context.Background())
		}
		return Response{}, err
	}
	return resp, nil
}

func readBatch(ctx context.Context, br pgx.BatchResults, req Request) (Response, error) {
	var resp Response
	if req.Timeout > 0 {
		if _, err := br.Exec(); err != nil {
			stage := StageValidate
			if req.Select != nil {
				stage = StageSelect
			}
			return resp, pgError(ctx, stage, err)
		}
	}
	if req.Select != nil {
		rows, err := readSelection(ctx, br, req.Select.MaxRows)
		if err != nil {
			return resp, err
		}
		resp.Rows = rows
	}
	if req.Probe != nil {
		resp.Answers = make([]Answer, len(req.Probe.IDs))
		for i, id := range req.Probe.IDs {
			a, err := readAnswer(ctx, br, id)
			if err != nil {
				return resp, err
			}
			resp.Answers[i] = a
		}
	}
	return resp, nil
}

func readSelection(ctx context.Context, br pgx.BatchResults, maxRows int) ([]Row, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, pgError(ctx, StageSelect, err)
	}
	defer rows.Close()

	tsCol := -1
	for i, fd := range rows.FieldDescriptions() {
		if i > 0 && fd.Name == "ts" {
			tsCol = i
		}
	}
	var out []Row
	for rows.Next() {
		if len(out) >= maxRows {
			continue // drain: the rest of the result is already on its way
		}
		raw := rows.RawValues()
		if len(raw) == 0 {
			return nil, &Error{Stage: StageSelect, Err: errors.New("selector returned no columns")}
		}
		if raw[0] == nil {
			return nil, &Error{Stage: StageSelect, Err: ErrNullID}
		}
		row := Row{ID: string(raw[0])}
		if tsCol >= 0 && raw[tsCol] != nil {
			vals, err := rows.Values()
			if err != nil {
				return nil, &Error{Stage: StageSelect, Err: err}
			}
			ts, err := toTime(vals[tsCol])
			if err != nil {
				return nil, &Error{Stage: StageSelect, Err: err}
			}
			row.TS = ts
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(ctx, StageSelect, err)
	}
	return out, nil
}

func readAnswer(ctx context.Context, br pgx.BatchResults, id string) (Answer, error) {
	rows, err := br.Query()
	if err != nil {
		return Answer{}, pgError(ctx, StageValidate, err)
	}
	defer rows.Close()

	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Answer{}, pgError(ctx, StageValidate, err)
		}
		return Answer{}, &Error{Stage: StageValidate,
			Err: fmt.Errorf("validator returned no row for id %q", id)}
	}
	raw := rows.RawValues()
	if len(raw) == 0 || raw[0] == nil {
		return Answer{}, &Error{Stage: StageValidate,
			Err: fmt.Errorf("validator returned NULL for id %q; it must return a count", id)}
	}
	n, err := strconv.ParseFloat(string(raw[0]), 64)
	if err != nil {
		return Answer{}, &Error{Stage: StageValidate,
			Err: fmt.Errorf("validator returned %q for id %q; it must return a count", raw[0], id)}
	}
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		return Answer{}, pgError(ctx, StageValidate, err)
	}
	return Answer{Present: n > 0}, nil
}

// toTime converts a ts column value: a timestamp, or Unix seconds.
func toTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t, nil
	case int64:
		return time.Unix(t, 0), nil
	case int32:
		return time.Unix(int64(t), 0), nil
	case float64:
		return unixFloat(t), nil
	case pgtype.Numeric:
		f, err := t.Float64Value()
		if err != nil || !f.Valid {
			return time.Time{}, fmt.Errorf("ts column: cannot read %v as Unix seconds", v)
		}
		return unixFloat(f.Float64), nil
	default:
		return time.Time{}, fmt.Errorf("ts column has type %T; want a timestamp or Unix seconds", v)
	}
}

func unixFloat(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// pgError classifies err. A server error (SQLSTATE) means the database
// answered; anything else means it could not be reached.
func pgError(ctx context.Context, stage Stage, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "57014" { // query_canceled: the statement timeout hit
			return &Error{Stage: stage, Err: fmt.Errorf("statement timeout: %s", pgErr.Message)}
		}
		return &Error{Stage: stage, Err: err}
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Stage: stage, Unreachable: true, Err: errTimeout}
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Stage: stage, Unreachable: true, Err: context.Canceled}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return &Error{Stage: stage, Unreachable: true, Err: errTimeout}
	}
	return &Error{Stage: stage, Unreachable: true, Err: err}
}

// errTimeout replaces the driver's many wordings of a deadline.
var errTimeout = errors.New("timed out waiting for the database")
