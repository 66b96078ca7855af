package db

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spengler-dev/spengler/internal/sqlscan"
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

// cancelGrace is how long a cancelled request waits for the server to confirm
// the cancellation before the connection is dropped.
const cancelGrace = 250 * time.Millisecond

// Postgres is a pool of connections to one PostgreSQL database.
//
// Every request goes out as one pipelined batch of the extended protocol: the
// statement timeout, the selector and the probe of every id travel together
// and come back in one round trip, inside one implicit transaction.
type Postgres struct {
	pool  *pgxpool.Pool
	types sync.Map // validator -> SQL type name of its parameter
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
	// On cancellation, ask the server to stop the query at once, and give up
	// on the connection shortly after if the server does not answer.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: cancelGrace}
	}
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

// Do runs req in one round trip. The validator is asked about every id at
// once: it becomes a lateral subquery over the list of ids, so the server
// plans it once and the answer comes back as one result. The first request
// with a new validator learns the type of its parameter, once per pool.
func (p *Postgres) Do(ctx context.Context, req Request) (Response, error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return Response{}, connectError(pgError(ctx, StageConnect, err))
	}
	defer conn.Release()

	b := &pgx.Batch{}
	if req.Timeout > 0 {
		ms := max(req.Timeout.Milliseconds(), 1)
		b.Queue(setTimeout, strconv.FormatInt(ms, 10))
	}
	if req.Select != nil {
		b.Queue(req.Select.Query)
	}
	if req.Probe != nil && len(req.Probe.IDs) > 0 {
		typ, err := p.paramType(ctx, conn, req.Probe.Query)
		if err != nil {
			return Response{}, p.fail(conn, req, err)
		}
		b.Queue(probeQuery(req.Probe.Query, typ), req.Probe.IDs)
	}

	br := conn.SendBatch(ctx, b)
	resp, err := readBatch(ctx, br, req)
	closeErr := br.Close()
	if err == nil && closeErr != nil {
		err = pgError(ctx, StageValidate, closeErr)
	}
	if err != nil {
		return Response{}, p.fail(conn, req, err)
	}
	return resp, nil
}

// fail cleans up after a failed request: a connection that did not answer
// may be half-way through a response and is dropped; a validator that the
// server refused has its parameter type learnt again next time, in case the
// schema changed.
func (p *Postgres) fail(conn *pgxpool.Conn, req Request, err error) error {
	if Unreachable(err) {
		conn.Conn().PgConn().Close(context.Background())
	}
	var e *Error
	if req.Probe != nil && errors.As(err, &e) && e.Stage == StageValidate {
		p.types.Delete(req.Probe.Query)
	}
	return err
}

// paramType returns the SQL type of the validator's parameter $1, asking the
// server the first time.
func (p *Postgres) paramType(ctx context.Context, conn *pgxpool.Conn, validator string) (string, error) {
	if t, ok := p.types.Load(validator); ok {
		return t.(string), nil
	}
	sd, err := conn.Conn().PgConn().Prepare(ctx, "", validator, nil)
	if err != nil {
		return "", pgError(ctx, StageValidate, err)
	}
	typ := "text"
	if len(sd.ParamOIDs) > 0 && sd.ParamOIDs[0] != 0 && sd.ParamOIDs[0] != unknownOID {
		err := conn.QueryRow(ctx, "select format_type($1::oid, null)", sd.ParamOIDs[0]).Scan(&typ)
		if err != nil {
			return "", pgError(ctx, StageValidate, err)
		}
	}
	p.types.Store(validator, typ)
	return typ, nil
}

// unknownOID is the type PostgreSQL gives a parameter it cannot place.
const unknownOID = 705

// setTimeout sets the statement timeout until the end of the request's
// implicit transaction.
const setTimeout = "select set_config('statement_timeout', $1, true)"

// probeQuery turns a validator into one query over a list of ids, passed as
// the text array $1: each id, cast to the type of the validator's parameter,
// takes the place of $1 in a lateral subquery, and each result row carries
// the id's place in the list. The query text depends only on the validator,
// so the server plans it once per connection.
func probeQuery(validator, typ string) string {
	inner := sqlscan.Replace(validator, sqlscan.Postgres, "$1",
		"spengler_ids.spengler_id::"+typ)
	return "select spengler_ids.spengler_ord, spengler_v.*" +
		" from unnest($1::text[]) with ordinality as spengler_ids(spengler_id, spengler_ord)" +
		" cross join lateral (" + inner + "\n) as spengler_v"
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
		rows, numeric, err := readSelection(ctx, br, req.Select.MaxRows)
		if err != nil {
			return resp, err
		}
		resp.Rows, resp.NumericIDs = rows, numeric
	}
	if req.Probe != nil && len(req.Probe.IDs) > 0 {
		answers, err := readAnswers(ctx, br, req.Probe.IDs)
		if err != nil {
			return resp, err
		}
		resp.Answers = answers
	}
	return resp, nil
}

func readSelection(ctx context.Context, br pgx.BatchResults, maxRows int) ([]Row, bool, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, false, pgError(ctx, StageSelect, err)
	}
	defer rows.Close()

	tsCol := -1
	numeric := false
	for i, fd := range rows.FieldDescriptions() {
		if i == 0 {
			switch fd.DataTypeOID {
			case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
				numeric = true
			}
		}
		if i > 0 && fd.Name == "ts" {
			tsCol = i
		}
	}
	var out []Row
	for rows.Next() {
		if len(out) >= maxRows {
			continue // drain: the rest of the result is already on its way
		}
		vals, err := rows.Values()
		if err != nil {
			return nil, false, &Error{Stage: StageSelect, Err: err}
		}
		if len(vals) == 0 {
			return nil, false, &Error{Stage: StageSelect, Err: errors.New("selector returned no columns")}
		}
		id, ok := Text(vals[0])
		if !ok {
			return nil, false, &Error{Stage: StageSelect, Err: ErrNullID}
		}
		row := Row{ID: id}
		if tsCol >= 0 && vals[tsCol] != nil {
			ts, err := toTime(vals[tsCol])
			if err != nil {
				return nil, false, &Error{Stage: StageSelect, Err: err}
			}
			row.TS = ts
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, false, pgError(ctx, StageSelect, err)
	}
	return out, numeric, nil
}

// readAnswers reads the result of a probe: one row per id that the
// validator returned a row for, numbered by the id's place in the list.
func readAnswers(ctx context.Context, br pgx.BatchResults, ids []string) ([]Answer, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, pgError(ctx, StageValidate, err)
	}
	defer rows.Close()

	answers := make([]Answer, len(ids))
	seen := make([]bool, len(ids))
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, &Error{Stage: StageValidate, Err: err}
		}
		ord, ok := vals[0].(int64)
		if !ok || ord < 1 || ord > int64(len(ids)) {
			return nil, &Error{Stage: StageValidate, Err: fmt.Errorf("bad ordinal %v", vals[0])}
		}
		i := ord - 1
		if seen[i] {
			continue // the validator returned more than one row: the first counts
		}
		seen[i] = true
		a, err := answer(vals[1], ids[i])
		if err != nil {
			return nil, err
		}
		answers[i] = a
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(ctx, StageValidate, err)
	}
	for i, ok := range seen {
		if !ok {
			return nil, &Error{Stage: StageValidate,
				Err: fmt.Errorf("validator returned no row for id %q", ids[i])}
		}
	}
	return answers, nil
}

// answer reads the first column a validator returned for id: a count.
func answer(v any, id string) (Answer, error) {
	text, ok := Text(v)
	if !ok {
		return Answer{}, &Error{Stage: StageValidate,
			Err: fmt.Errorf("validator returned NULL for id %q; it must return a count", id)}
	}
	n, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return Answer{}, &Error{Stage: StageValidate,
			Err: fmt.Errorf("validator returned %q for id %q; it must return a count", text, id)}
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
// answered; anything else means it could not be reached. Running out of
// time is a timeout either way: when the server confirmed the cancellation
// it is still counted as reachable.
func pgError(ctx context.Context, stage Stage, err error) error {
	var pgErr *pgconn.PgError
	isPg := errors.As(err, &pgErr)
	if ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Stage: stage, Unreachable: !isPg, Err: errTimeout}
	}
	if ctx.Err() == context.Canceled || errors.Is(err, context.Canceled) {
		return &Error{Stage: stage, Unreachable: !isPg, Err: context.Canceled}
	}
	if isPg {
		if pgErr.Code == "57014" { // query_canceled: the statement timeout hit
			return &Error{Stage: stage, Err: fmt.Errorf("statement timeout: %s", pgErr.Message)}
		}
		return &Error{Stage: stage, Err: pgErr}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return &Error{Stage: stage, Unreachable: true, Err: errTimeout}
	}
	return &Error{Stage: stage, Unreachable: true, Err: err}
}

// errTimeout replaces the driver's many wordings of a deadline.
var errTimeout = errors.New("timed out waiting for the database")
