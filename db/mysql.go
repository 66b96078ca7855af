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
type MySQL struct {
	db        *sql.DB
	connector *mysqlConnector
	kills     sync.WaitGroup
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

	text := m.requestText(info, req)
	resp, err := m.run(ctx, conn, text, req)
	if err != nil && ctx.Err() != nil {
		m.kill(info.id)
	}
	return resp, err
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
		b.WriteString(mysqlProbe(req.Probe))
		b.WriteString("\n;")
	}
	return b.String()
}

// mysqlProbe writes one statement that runs the validator once per id: a
// UNION ALL of the validator, each branch with one id in place of ? and
// numbered by the id's place in the list.
func mysqlProbe(p *Probe) string {
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
	firstStage := StageValidate
	if req.Select != nil {
		firstStage = StageSelect
	}
	rows, err := conn.QueryContext(ctx, text)
	if err != nil {
		return Response{}, mysqlError(ctx, firstStage, err)
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
		if resp.Rows, resp.NumericIDs, err = mysqlSelection(ctx, rows, req.Select.MaxRows); err != nil {
			return Response{}, err
		}
	}
	if req.Probe != nil && len(req.Probe.IDs) > 0 {
		if err := next(StageValidate); err != nil {
			return Response{}, err
		}
		if resp.Answers, err = mysqlAnswers(ctx, rows, req.Probe.IDs); err != nil {
			return Response{}, err
		}
	}
	if err := rows.Close(); err != nil {
		return Response{}, mysqlError(ctx, StageValidate, err)
	}
	return resp, nil
}

func mysqlSelection(ctx context.Context, rows *sql.Rows, maxRows int) ([]Row, bool, error) {
	cols, err := rows.ColumnTypes()
	if err != nil {
		return nil, false, mysqlError(ctx, StageSelect, err)
	}
	if len(cols) == 0 {
		return nil, false, &Error{Stage: StageSelect, Err: errors.New("selector returned no columns")}
	}
	tsCol := -1
	for i, c := range cols {
		if i > 0 && c.Name() == "ts" {
			tsCol = i
		}
	}
	numeric := isIntegerType(cols[0].DatabaseTypeName())
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out []Row
	for rows.Next() {
		if len(out) >= maxRows {
			continue // drain: the rest of the result is already on its way
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, false, &Error{Stage: StageSelect, Err: err}
		}
		id, ok := Text(vals[0])
		if !ok {
			return nil, false, &Error{Stage: StageSelect, Err: ErrNullID}
		}
		row := Row{ID: id}
		if tsCol >= 0 && vals[tsCol] != nil {
			ts, err := mysqlTime(vals[tsCol])
			if err != nil {
				return nil, false, &Error{Stage: StageSelect, Err: err}
			}
			row.TS = ts
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, false, mysqlError(ctx, StageSelect, err)
	}
	return out, numeric, nil
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

func mysqlAnswers(ctx context.Context, rows *sql.Rows, ids []string) ([]Answer, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, mysqlError(ctx, StageValidate, err)
	}
	if len(cols) < 2 {
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
		seen[i] = true
		if answers[i], err = answer(vals[1], ids[i]); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, mysqlError(ctx, StageValidate, err)
	}
	for i, ok := range seen {
		if !ok {
			return nil, &Error{Stage: StageValidate,
				Err: fmt.Errorf("validator returned no row for id %q", ids[i])}
		}
	}
	return answers, nil
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
