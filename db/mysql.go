package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/spengler-dev/spengler/internal/sqlscan"
)

// MySQLOptions configures a MySQL or MariaDB connection pool.
type MySQLOptions struct {
	// DSN is in the Go MySQL driver's form: user@tcp(host:port)/db?params.
	DSN string
	// Password, when not empty, replaces any password in the DSN.
	Password string
	// MaxConns bounds the pool.
	MaxConns int
	// ConnectTimeout bounds establishing one connection.
	ConnectTimeout time.Duration
}

// killTimeout bounds the side connection that stops a query whose check gave up.
const killTimeout = 2 * time.Second

// MySQL is a pool of connections to one MySQL or MariaDB database.
//
// Every request is one text query holding several statements: the session's
// statement time limit, the selector and one statement that runs the
// validator for every id. They travel in one message and their results come
// back in one round trip. Ids are sent as literals, written so that no id can
// change the statement: integers as numbers, everything else as hex strings.
//
// The validator runs as a correlated subquery over the list of ids, planned
// once for all of them. A validator that cannot (more than one column or
// row, or ? inside a derived table) is run instead as a UNION ALL with one
// branch per id, from the first time the server refuses the subquery.
type MySQL struct {
	db        *sql.DB
	connector *mysqlConnector
	kills     sync.WaitGroup
	unions    sync.Map // validators that run as a UNION ALL
	tables    sync.Map // heartbeat tables created (or found) by this pool
}

// NewMySQL prepares a pool. It does not connect: connections are made on
// first use, so an unreachable database does not delay start-up.
func NewMySQL(opts MySQLOptions) (*MySQL, error) {
	cfg, err := mysql.ParseDSN(opts.DSN)
	if err != nil {
		return nil, errors.New("cannot parse dsn")
	}
	if opts.Password != "" {
		cfg.Passwd = opts.Password
	}
	cfg.MultiStatements = true
	cfg.ParseTime = true
	if opts.ConnectTimeout > 0 && cfg.Timeout == 0 {
		cfg.Timeout = opts.ConnectTimeout
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	// Timestamps come back in UTC and are read as UTC, whatever the
	// server's time zone.
	if _, ok := cfg.Params["time_zone"]; !ok {
		cfg.Params["time_zone"] = "'+00:00'"
		cfg.Loc = time.UTC
	}
	if cfg.ConnectionAttributes == "" {
		cfg.ConnectionAttributes = "program_name:spengler"
	}
	base, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, errors.New("cannot use dsn")
	}
	c := &mysqlConnector{base: base}
	pool := sql.OpenDB(c)
	maxConns := opts.MaxConns
	if maxConns <= 0 {
		maxConns = 4
	}
	pool.SetMaxOpenConns(maxConns)
	pool.SetMaxIdleConns(maxConns)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	return &MySQL{db: pool, connector: c}, nil
}

// Close closes every connection of the pool, after the queries being stopped
// on the server are stopped.
func (m *MySQL) Close() {
	m.kills.Wait()
	m.db.Close()
}

// Do runs req in one round trip.
func (m *MySQL) Do(ctx context.Context, req Request) (Response, error) {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return Response{}, connectError(mysqlError(ctx, StageConnect, err))
	}
	defer conn.Close()
	var info *mysqlConn
	if err := conn.Raw(func(dc any) error {
		info, _ = dc.(*mysqlConn)
		return nil
	}); err != nil || info == nil {
		return Response{}, &Error{Stage: StageConnect, Unreachable: true,
			Err: errors.New("connection lost")}
	}

	resp, err := m.run(ctx, conn, m.requestText(info, req), req)
	if err != nil && ctx.Err() == nil && m.needsUnion(req, err) {
		m.unions.Store(req.Probe.Query, true)
		resp, err = m.run(ctx, conn, m.requestText(info, req), req)
	}
	if err != nil && ctx.Err() != nil {
		m.kill(info.id)
	}
	if hb := req.Heartbeat; err == nil && hb != nil && hb.WriteUS != 0 && hb.Create {
		// Created once per pool: the DDL is not sent with every check.
		m.tables.Store(hb.Table, true)
	}
	return resp, err
}

// needsUnion reports whether err is the server refusing to run the
// validator of req as a subquery.
func (m *MySQL) needsUnion(req Request, err error) bool {
	var e *Error
	var myErr *mysql.MySQLError
	if req.Probe == nil || !errors.As(err, &e) || e.Stage != StageValidate ||
		!errors.As(err, &myErr) {
		return false
	}
	if _, ok := m.unions.Load(req.Probe.Query); ok {
		return false
	}
	switch myErr.Number {
	case 1241, // operand should contain 1 column
		1242, // subquery returns more than 1 row
		1054, // unknown column: ? inside a derived table
		1267, // illegal mix of collations: the ids' and the column's
		1270, 1271:
		return true
	}
	return false
}

// requestText writes the statements of req as one text.
func (m *MySQL) requestText(c *mysqlConn, req Request) string {
	var b strings.Builder
	if req.Timeout > 0 {
		if c.mariadb {
			secs := max(req.Timeout.Seconds(), 0.001)
			fmt.Fprintf(&b, "set session max_statement_time = %.3f;\n", secs)
		} else {
			ms := max(req.Timeout.Milliseconds(), 1)
			fmt.Fprintf(&b, "set session max_execution_time = %d;\n", ms)
		}
	}
	if req.Select != nil {
		b.WriteString(req.Select.Query)
		b.WriteString("\n;\n")
	}
	if req.Probe != nil && len(req.Probe.IDs) > 0 {
		if _, union := m.unions.Load(req.Probe.Query); union {
			b.WriteString(mysqlUnionProbe(req.Probe))
		} else {
			b.WriteString(mysqlProbe(req.Probe))
		}
		b.WriteString("\n;\n")
	}
	// The heartbeat comes last: a write returns no result, so its error is
	// told apart from the others' by coming after all of them.
	if hb := req.Heartbeat; hb != nil {
		origin := mysqlLiteral(hb.Origin, false)
		switch {
		case hb.WriteUS != 0:
			if _, done := m.tables.Load(hb.Table); hb.Create && !done {
				b.WriteString("create table if not exists " + hb.Table +
					" (origin varchar(255) primary key, ts_us bigint not null);\n")
			}
			fmt.Fprintf(&b, "insert into %s (origin, ts_us) values (%s, %d)"+
				" on duplicate key update ts_us = %d;\n", hb.Table, origin, hb.WriteUS, hb.WriteUS)
		default:
			fmt.Fprintf(&b, "select ts_us from %s where origin = %s;\n", hb.Table, origin)
		}
	}
	return b.String()
}

// mysqlProbe writes one statement that runs the validator once per id: the
// validator, with the id column of a derived table of ids in place of ?, is
// a subquery in the select list, and each row carries the id's place in the
// list.
//
// For a probe of versions, a scalar subquery gives NULL both for no row and
// for a row whose version is NULL; an exists over the same subquery, in a
// column before it, tells the two apart.
func mysqlProbe(p *Probe) string {
	var b strings.Builder
	inner := sqlscan.Replace(p.Query, sqlscan.MySQL, "?", "spengler_ids.spengler_id")
	b.WriteString("select spengler_ids.spengler_ord, ")
	if p.Versions {
		b.WriteString("exists (\n" + inner + "\n), ")
	}
	b.WriteString("(\n" + inner + "\n) from (")
	for i, id := range p.IDs {
		if i == 0 {
			fmt.Fprintf(&b, "select 1 as spengler_ord, %s as spengler_id",
				mysqlLiteral(id, p.NumericIDs))
			continue
		}
		fmt.Fprintf(&b, " union all select %d, %s", i+1, mysqlLiteral(id, p.NumericIDs))
	}
	b.WriteString(") as spengler_ids")
	return b.String()
}

// mysqlUnionProbe writes one statement that runs the validator once per
// id: a UNION ALL of the validator, each branch with one id in place of ?
// and numbered by the id's place in the list.
func mysqlUnionProbe(p *Probe) string {
	var b strings.Builder
	for i, id := range p.IDs {
		if i > 0 {
			b.WriteString("\nunion all\n")
		}
		fmt.Fprintf(&b, "select %d as spengler_ord, spengler_v.* from (\n", i+1)
		b.WriteString(sqlscan.Replace(p.Query, sqlscan.MySQL, "?", mysqlLiteral(id, p.NumericIDs)))
		b.WriteString("\n) as spengler_v")
	}
	return b.String()
}

// mysqlLiteral writes id as an SQL literal. An integer id of an integer
// column is written as a number, so that it compares as one; any other id
// as a hex-coded character string, which no content can break out of.
func mysqlLiteral(id string, numeric bool) string {
	if numeric && isInteger(id) {
		return id
	}
	return "_utf8mb4 x'" + hex.EncodeToString([]byte(id)) + "'"
}

// isInteger reports whether s is a decimal integer of at most 20 digits.
func isInteger(s string) bool {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || len(digits) > 20 {
		return false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// run sends the request's text and reads its results.
func (m *MySQL) run(ctx context.Context, conn *sql.Conn, text string, req Request) (Response, error) {
	first := StageHeartbeat
	switch {
	case req.Select != nil:
		first = StageSelect
	case req.Probe != nil && len(req.Probe.IDs) > 0:
		first = StageValidate
	}
	rows, err := conn.QueryContext(ctx, text)
	if err != nil {
		return Response{}, mysqlError(ctx, first, err)
	}
	defer rows.Close()

	var resp Response
	started := false // whether rows is at a result set to read
	next := func(stage Stage) error {
		if started && !rows.NextResultSet() {
			if err := rows.Err(); err != nil {
				return mysqlError(ctx, stage, err)
			}
			return &Error{Stage: stage, Err: errors.New("the server sent fewer results than statements")}
		}
		started = true
		return nil
	}
	if req.Select != nil {
		if err := next(StageSelect); err != nil {
			return Response{}, err
		}
		sel, err := mysqlSelection(ctx, rows, req.Select.MaxRows)
		if err != nil {
			return Response{}, err
		}
		resp.Rows, resp.NumericIDs, resp.Versions = sel.rows, sel.numeric, sel.versions
	}
	if req.Probe != nil && len(req.Probe.IDs) > 0 {
		if err := next(StageValidate); err != nil {
			return Response{}, err
		}
		_, union := m.unions.Load(req.Probe.Query)
		if resp.Answers, err = mysqlAnswers(ctx, rows, req.Probe, union); err != nil {
			return Response{}, err
		}
	}
	if hb := req.Heartbeat; hb != nil {
		if hb.WriteUS != 0 {
			// The write has no result set: advancing past the last one
			// reports its error, if any.
			if started && rows.NextResultSet() {
				return Response{}, &Error{Stage: StageHeartbeat,
					Err: errors.New("the server sent more results than statements")}
			}
			if err := rows.Err(); err != nil {
				return Response{}, mysqlError(ctx, StageHeartbeat, err)
			}
		} else {
			if err := next(StageHeartbeat); err != nil {
				return Response{}, err
			}
			for rows.Next() {
				var us int64
				if err := rows.Scan(&us); err != nil {
					return Response{}, &Error{Stage: StageHeartbeat, Err: err}
				}
				resp.HeartbeatUS, resp.HeartbeatFound = us, true
			}
			if err := rows.Err(); err != nil {
				return Response{}, mysqlError(ctx, StageHeartbeat, err)
			}
		}
	}
	if err := rows.Close(); err != nil {
		return Response{}, mysqlError(ctx, StageHeartbeat, err)
	}
	return resp, nil
}

func mysqlSelection(ctx context.Context, rows *sql.Rows, maxRows int) (selection, error) {
	var sel selection
	cols, err := rows.ColumnTypes()
	if err != nil {
		return sel, mysqlError(ctx, StageSelect, err)
	}
	if len(cols) == 0 {
		return sel, &Error{Stage: StageSelect, Err: errors.New("selector returned no columns")}
	}
	tsCol, versionCol := -1, -1
	for i, c := range cols {
		switch {
		case i == 0:
			sel.numeric = isIntegerType(c.DatabaseTypeName())
		case c.Name() == "ts":
			tsCol = i
		case c.Name() == "version":
			versionCol = i
		}
	}
	sel.versions = versionCol >= 0
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if len(sel.rows) >= maxRows {
			continue // drain: the rest of the result is already on its way
		}
		if err := rows.Scan(ptrs...); err != nil {
			return sel, &Error{Stage: StageSelect, Err: err}
		}
		row, err := makeRow(vals, tsCol, versionCol, mysqlTime)
		if err != nil {
			return sel, err
		}
		sel.rows = append(sel.rows, row)
	}
	if err := rows.Err(); err != nil {
		return sel, mysqlError(ctx, StageSelect, err)
	}
	return sel, nil
}

// isIntegerType reports whether a MySQL column type holds integers.
func isIntegerType(name string) bool {
	name = strings.TrimPrefix(name, "UNSIGNED ")
	switch name {
	case "TINYINT", "SMALLINT", "MEDIUMINT", "INT", "BIGINT", "YEAR":
		return true
	}
	return false
}

// mysqlTime converts a ts column value: a timestamp, or Unix seconds.
func mysqlTime(v any) (time.Time, error) {
	if b, ok := v.([]byte); ok {
		s := string(b)
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return unixFloat(f), nil
		}
		for _, layout := range []string{"2006-01-02 15:04:05.999999", "2006-01-02"} {
			if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("ts column: cannot read %q as a time or Unix seconds", s)
	}
	return toTime(v)
}

// mysqlAnswers reads the result of a probe written by mysqlProbe, or by
// mysqlUnionProbe when union is set.
func mysqlAnswers(ctx context.Context, rows *sql.Rows, probe *Probe, union bool) ([]Answer, error) {
	ids := probe.IDs
	cols, err := rows.Columns()
	if err != nil {
		return nil, mysqlError(ctx, StageValidate, err)
	}
	// The exists column of a subquery probe of versions comes first.
	flagged := probe.Versions && !union
	if len(cols) < 2 || (flagged && len(cols) < 3) {
		return nil, &Error{Stage: StageValidate, Err: errors.New("validator returned no columns")}
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	answers := make([]Answer, len(ids))
	seen := make([]bool, len(ids))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, &Error{Stage: StageValidate, Err: err}
		}
		text, _ := Text(vals[0])
		ord, err := strconv.Atoi(text)
		if err != nil || ord < 1 || ord > len(ids) {
			return nil, &Error{Stage: StageValidate, Err: fmt.Errorf("bad ordinal %v", vals[0])}
		}
		i := ord - 1
		if seen[i] {
			continue // the validator returned more than one row: the first counts
		}
		v := vals[1]
		if flagged {
			if present, _ := Text(vals[1]); present != "1" {
				continue // no row for this id: absent
			}
			v = vals[2]
		}
		seen[i] = true
		if answers[i], err = answer(v, ids[i], probe.Versions); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, mysqlError(ctx, StageValidate, err)
	}
	return answers, unanswered(seen, probe)
}

// kill stops the query of connection id on the server, from a connection of
// its own, in the background. Close waits for it.
func (m *MySQL) kill(id uint64) {
	if id == 0 {
		return
	}
	m.kills.Add(1)
	go func() {
		defer m.kills.Done()
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		dc, err := m.connector.base.Connect(ctx)
		if err != nil {
			return
		}
		defer dc.Close()
		if ex, ok := dc.(driver.ExecerContext); ok {
			ex.ExecContext(ctx, "kill query "+strconv.FormatUint(id, 10), nil)
		}
	}()
}

// mysqlConnector opens connections and learns, once per connection, its id
// on the server (to stop its query when a check gives up) and the flavour of
// the server (MariaDB and MySQL name their statement time limits apart).
type mysqlConnector struct {
	base driver.Connector
}

func (c *mysqlConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		dc.Close()
		return nil, errors.New("driver cannot run queries")
	}
	rows, err := q.QueryContext(ctx, "select connection_id(), version()", nil)
	if err != nil {
		dc.Close()
		return nil, err
	}
	vals := make([]driver.Value, 2)
	err = rows.Next(vals)
	rows.Close()
	if err != nil {
		dc.Close()
		if err == io.EOF {
			err = errors.New("no connection id")
		}
		return nil, err
	}
	idText, _ := Text(vals[0])
	id, _ := strconv.ParseUint(idText, 10, 64)
	ver, _ := Text(vals[1])
	return &mysqlConn{Conn: dc, id: id, mariadb: strings.Contains(strings.ToLower(ver), "mariadb")}, nil
}

func (c *mysqlConnector) Driver() driver.Driver { return c.base.Driver() }

// mysqlConn is a driver connection with what Spengler knows about it. It
// passes on the optional interfaces that database/sql uses.
type mysqlConn struct {
	driver.Conn
	id      uint64
	mariadb bool
}

func (c *mysqlConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	if qc, ok := c.Conn.(driver.QueryerContext); ok {
		return qc.QueryContext(ctx, q, args)
	}
	return nil, driver.ErrSkip
}

func (c *mysqlConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if ec, ok := c.Conn.(driver.ExecerContext); ok {
		return ec.ExecContext(ctx, q, args)
	}
	return nil, driver.ErrSkip
}

func (c *mysqlConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	if pc, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return pc.PrepareContext(ctx, q)
	}
	return c.Conn.Prepare(q)
}

func (c *mysqlConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if bc, ok := c.Conn.(driver.ConnBeginTx); ok {
		return bc.BeginTx(ctx, opts)
	}
	return nil, errors.New("transactions are not supported")
}

func (c *mysqlConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *mysqlConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *mysqlConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *mysqlConn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := c.Conn.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// MySQL and MariaDB error numbers that Spengler tells apart.
const (
	mariadbStatementTimeout = 1969 // max_statement_time exceeded
	mysqlStatementTimeout   = 3024 // max_execution_time exceeded
	mysqlQueryInterrupted   = 1317 // query execution was interrupted (KILL QUERY)
)

// mysqlError classifies err as pgError does for PostgreSQL: a server error
// means the database answered; anything else means it could not be reached.
func mysqlError(ctx context.Context, stage Stage, err error) error {
	var myErr *mysql.MySQLError
	isMy := errors.As(err, &myErr)
	if ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Stage: stage, Unreachable: !isMy, Err: errTimeout}
	}
	if ctx.Err() == context.Canceled || errors.Is(err, context.Canceled) {
		return &Error{Stage: stage, Unreachable: !isMy, Err: context.Canceled}
	}
	if isMy {
		switch myErr.Number {
		case mariadbStatementTimeout, mysqlStatementTimeout, mysqlQueryInterrupted:
			return &Error{Stage: stage, Err: fmt.Errorf("statement timeout: %s", myErr.Message)}
		}
		return &Error{Stage: stage, Err: myErr}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return &Error{Stage: stage, Unreachable: true, Err: errTimeout}
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) {
		return &Error{Stage: stage, Unreachable: true, Err: errors.New("connection lost")}
	}
	return &Error{Stage: stage, Unreachable: true, Err: err}
}

// connectError marks a failure to get a connection as the database being
// unreachable, whatever the reason: a refused password makes the database
// as unusable as a dead server.
func connectError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Unreachable = true
	}
	return err
}
