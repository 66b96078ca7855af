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
	pool   *pgxpool.Pool
	types  sync.Map // validator -> SQL type name of its parameter
	tables sync.Map // heartbeat tables created (or found) by this pool
	fresh  sync.Map // connections not used for a request yet
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
	// No ping before a request: it would be a second round trip for every
	// check that finds its connection idle, which is most of them. A
	// connection that died while idle is found by the request itself, which
	// is then sent once more on a new connection (see Do).
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	p := &Postgres{}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		p.fresh.Store(c.PgConn(), true)
		return nil
	}
	cfg.BeforeClose = func(c *pgx.Conn) { p.fresh.Delete(c.PgConn()) }
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	p.pool = pool
	return p, nil
}

// Close closes every connection of the pool.
func (p *Postgres) Close() { p.pool.Close() }

// Do runs req in one round trip. The validator is asked about every id at
// once: it becomes a lateral subquery over the list of ids, so the server
// plans it once and the answer comes back as one result. The first request
// with a new validator learns the type of its parameter, once per pool.
//
// A request that finds its pooled connection dead (the server restarted, or
// closed the connection while it was idle) is sent again on another
// connection, until one answers for itself: the server may have closed every
// idle connection of the pool at once, and only a connection that was not
// already dead before the request is taken as the database's answer. The
// pool holds at most MaxConns connections, so the tries are bounded.
func (p *Postgres) Do(ctx context.Context, req Request) (Response, error) {
	resp, reused, err := p.do(ctx, req)
	for tries := int(p.pool.Config().MaxConns); err != nil && reused && tries > 0 && deadConn(ctx, err); tries-- {
		resp, reused, err = p.do(ctx, req)
	}
	return resp, err
}

// deadConn reports whether err means the connection is gone, while the
// request still has time: a network failure other than a timeout, or the
// server's notice that it closed the connection.
func deadConn(ctx context.Context, err error) bool {
	var e *Error
	if ctx.Err() != nil || !errors.As(err, &e) || e.Stage == StageConnect ||
		errors.Is(err, errTimeout) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02": // admin_shutdown (also pg_terminate_backend), crash_shutdown
			return true
		}
		return false
	}
	return e.Unreachable
}

// do runs req once on a connection of the pool, and tells whether that
// connection had served a request before.
func (p *Postgres) do(ctx context.Context, req Request) (Response, bool, error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return Response{}, false, connectError(pgError(ctx, StageConnect, err))
	}
	defer conn.Release()
	_, fresh := p.fresh.LoadAndDelete(conn.Conn().PgConn())
	resp, err := p.send(ctx, conn, req)
	return resp, !fresh, err
}

// send runs req on conn in one round trip.
func (p *Postgres) send(ctx context.Context, conn *pgxpool.Conn, req Request) (Response, error) {

	b := &pgx.Batch{}
	var stages []stagedQuery // the batch's statements after the timeout
	if req.Timeout > 0 {
		ms := max(req.Timeout.Milliseconds(), 1)
		b.Queue(setTimeout, strconv.FormatInt(ms, 10))
	}
	hb := req.Heartbeat
	if hb != nil && hb.WriteUS != 0 {
		if hb.Create && !p.created(hb.Table) {
			// Once per pool and table, before the batch: statements of a
			// batch are prepared before any runs.
			_, err := conn.Exec(ctx, "create table if not exists "+hb.Table+
				" (origin text primary key, ts_us bigint not null)")
			if err != nil {
				return Response{}, p.fail(conn, req, pgError(ctx, StageHeartbeat, err))
			}
			p.tables.Store(hb.Table, true)
		}
		q := "insert into " + hb.Table + " (origin, ts_us) values ($1, $2)" +
			" on conflict (origin) do update set ts_us = excluded.ts_us"
		b.Queue(q, hb.Origin, hb.WriteUS)
		stages = append(stages, stagedQuery{StageHeartbeat, q})
	}
	if req.Select != nil {
		b.Queue(req.Select.Query)
		stages = append(stages, stagedQuery{StageSelect, req.Select.Query})
	}
	if req.Probe != nil && len(req.Probe.IDs) > 0 {
		typ, err := p.paramType(ctx, conn, req.Probe.Query)
		if err != nil {
			return Response{}, p.fail(conn, req, err)
		}
		b.Queue(probeQuery(req.Probe.Query, typ), req.Probe.IDs)
	}
	if hb != nil && hb.WriteUS == 0 {
		q := "select ts_us from " + hb.Table + " where origin = $1"
		b.Queue(q, hb.Origin)
		stages = append(stages, stagedQuery{StageHeartbeat, q})
	}

	br := conn.SendBatch(ctx, b)
	resp, err := readBatch(ctx, br, req)
	closeErr := br.Close()
	if err == nil && closeErr != nil {
		err = pgError(ctx, StageValidate, closeErr)
	}
	if err != nil {
		p.placeError(ctx, conn, stages, err)
		return Response{}, p.fail(conn, req, err)
	}
	return resp, nil
}

// stagedQuery is a statement of a batch and the stage it belongs to.
type stagedQuery struct {
	stage Stage
	sql   string
}

// placeError finds the statement that a batch's SQL error belongs to. The
// statements of a batch are all prepared before the first runs, so an error
// in preparing any of them comes back as the first statement's: each is
// then prepared alone, once, to find the one at fault. This costs round
// trips only when a query is wrong.
func (p *Postgres) placeError(ctx context.Context, conn *pgxpool.Conn, stages []stagedQuery, err error) {
	var e *Error
	var pgErr *pgconn.PgError
	if len(stages) < 2 || !errors.As(err, &e) || e.Stage != stages[0].stage ||
		!errors.As(err, &pgErr) || ctx.Err() != nil {
		return
	}
	for _, sq := range stages {
		if _, perr := conn.Conn().PgConn().Prepare(ctx, "", sq.sql, nil); perr != nil {
			e.Stage = sq.stage
			return
		}
	}
}

// created reports whether this pool has created (or found) table.
func (p *Postgres) created(table string) bool {
	_, ok := p.tables.Load(table)
	return ok
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
	hb := req.Heartbeat
	if req.Timeout > 0 {
		if _, err := br.Exec(); err != nil {
			return resp, pgError(ctx, firstStage(req), err)
		}
	}
	if hb != nil && hb.WriteUS != 0 {
		if _, err := br.Exec(); err != nil {
			return resp, pgError(ctx, StageHeartbeat, err)
		}
	}
	if req.Select != nil {
		sel, err := readSelection(ctx, br, req.Select.MaxRows)
		if err != nil {
			return resp, err
		}
		resp.Rows, resp.NumericIDs, resp.Versions = sel.rows, sel.numeric, sel.versions
	}
	if req.Probe != nil && len(req.Probe.IDs) > 0 {
		answers, err := readAnswers(ctx, br, req.Probe)
		if err != nil {
			return resp, err
		}
		resp.Answers = answers
	}
	if hb != nil && hb.WriteUS == 0 {
		err := br.QueryRow().Scan(&resp.HeartbeatUS)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return resp, pgError(ctx, StageHeartbeat, err)
		default:
			resp.HeartbeatFound = true
		}
	}
	return resp, nil
}

// firstStage is the stage of the first query of req after the timeout.
func firstStage(req Request) Stage {
	switch {
	case req.Heartbeat != nil && req.Heartbeat.WriteUS != 0:
		return StageHeartbeat
	case req.Select != nil:
		return StageSelect
	case req.Probe != nil:
		return StageValidate
	default:
		return StageHeartbeat
	}
}

// selection is what a selector returned.
type selection struct {
	rows     []Row
	numeric  bool // the id column has an integer type
	versions bool // there is a version column
}

func readSelection(ctx context.Context, br pgx.BatchResults, maxRows int) (selection, error) {
	var sel selection
	rows, err := br.Query()
	if err != nil {
		return sel, pgError(ctx, StageSelect, err)
	}
	defer rows.Close()

	tsCol, versionCol := -1, -1
	for i, fd := range rows.FieldDescriptions() {
		switch {
		case i == 0:
			switch fd.DataTypeOID {
			case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
				sel.numeric = true
			}
		case fd.Name == "ts":
			tsCol = i
		case fd.Name == "version":
			versionCol = i
		}
	}
	sel.versions = versionCol >= 0
	for rows.Next() {
		if len(sel.rows) >= maxRows {
			continue // drain: the rest of the result is already on its way
		}
		vals, err := rows.Values()
		if err != nil {
			return sel, &Error{Stage: StageSelect, Err: err}
		}
		if len(vals) == 0 {
			return sel, &Error{Stage: StageSelect, Err: errors.New("selector returned no columns")}
		}
		row, err := makeRow(vals, tsCol, versionCol, toTime)
		if err != nil {
			return sel, err
		}
		sel.rows = append(sel.rows, row)
	}
	if err := rows.Err(); err != nil {
		return sel, pgError(ctx, StageSelect, err)
	}
	return sel, nil
}

// makeRow builds a Row from the values of a selector's row.
func makeRow(vals []any, tsCol, versionCol int, conv func(any) (time.Time, error)) (Row, error) {
	id, ok := Text(vals[0])
	if !ok {
		return Row{}, &Error{Stage: StageSelect, Err: ErrNullID}
	}
	row := Row{ID: id}
	if tsCol >= 0 && vals[tsCol] != nil {
		ts, err := conv(vals[tsCol])
		if err != nil {
			return Row{}, &Error{Stage: StageSelect, Err: err}
		}
		row.TS = ts
	}
	if versionCol >= 0 {
		row.Version, _ = Text(vals[versionCol])
	}
	return row, nil
}

// readAnswers reads the result of a probe: one row per id that the
// validator returned a row for, numbered by the id's place in the list.
func readAnswers(ctx context.Context, br pgx.BatchResults, probe *Probe) ([]Answer, error) {
	ids := probe.IDs
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
		a, err := answer(vals[1], ids[i], probe.Versions)
		if err != nil {
			return nil, err
		}
		answers[i] = a
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(ctx, StageValidate, err)
	}
	return answers, unanswered(seen, probe)
}

// unanswered checks that the validator returned a row for every id. A
// probe of versions has no row for an absent id; a count always has one.
func unanswered(seen []bool, probe *Probe) error {
	if probe.Versions {
		return nil
	}
	for i, ok := range seen {
		if !ok {
			return &Error{Stage: StageValidate,
				Err: fmt.Errorf("validator returned no row for id %q", probe.IDs[i])}
		}
	}
	return nil
}

// answer reads the first column a validator returned for id: a count, or
// the target's version of the row.
func answer(v any, id string, versions bool) (Answer, error) {
	text, ok := Text(v)
	if versions {
		// A row came back, so the row is there, whatever its version; a
		// NULL version reads as empty, on either side.
		return Answer{Present: true, Version: text}, nil
	}
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
