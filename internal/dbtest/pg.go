package dbtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds on the waits the harness does on its own.
const (
	readyTimeout   = 30 * time.Second // a starting server accepting connections
	stopTimeout    = 30 * time.Second // a fast shutdown
	killTimeout    = 10 * time.Second // an immediate shutdown or a kill
	connectTimeout = 10 * time.Second // one connection attempt from Exec and friends
	pollInterval   = 50 * time.Millisecond
	logTailBytes   = 3000
)

// errPortTaken reports that a server could not bind its port.
var errPortTaken = errors.New("port already in use")

// serverSettings are the settings every server runs with, given as -c options.
var serverSettings = []string{
	"listen_addresses=127.0.0.1",
	"wal_level=logical",
	"max_wal_senders=10",
	"max_replication_slots=10",
	"hot_standby=on",
	"fsync=off",
	"synchronous_commit=off",
	"full_page_writes=off",
	"shared_buffers=32MB",
	"max_connections=100",
	// Restart logical replication workers and retry streaming quickly after a
	// subscription is enabled again or a server comes back.
	"wal_retrieve_retry_interval=200ms",
	"logging_collector=off",
	"log_destination=stderr",
}

// PG is one PostgreSQL server run by the harness. Its lifecycle methods (Start,
// Stop, Freeze, Thaw, Close) are serialised; the query helpers may be called
// concurrently with anything.
type PG struct {
	// Name names the server in messages and its directory under the base directory.
	Name string
	// Port is the loopback TCP port the server listens on.
	Port int
	// Dir is the data directory.
	Dir string
	// Root is the server's own directory: it holds Dir, LogFile and usually the socket.
	Root string
	// LogFile is the file the server logs to.
	LogFile string

	bin     string
	user    *serverUser
	sockDir string
	ownSock bool // sockDir is a directory of its own, removed by Close

	mu     sync.Mutex
	srv    *server
	frozen []int // stopped processes, postmaster first
	closed bool
}

// server is one run of a postmaster.
type server struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and err is set
	err  error
}

// StartPG creates a new cluster in baseDir/name with initdb (trust authentication,
// superuser postgres, UTF8, no sync), starts it on a free loopback port and waits
// until it accepts connections.
func StartPG(ctx context.Context, name string, baseDir string) (*PG, error) {
	p, err := newPG(name, baseDir)
	if err != nil {
		return nil, err
	}
	err = p.runTool(ctx, "initdb", "-D", p.Dir, "-A", "trust", "-U", "postgres", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	if err == nil {
		p.mu.Lock()
		err = p.start(ctx, true)
		p.mu.Unlock()
	}
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// newPG prepares the directory of a server that does not exist yet.
func newPG(name, baseDir string) (*PG, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("create server %q: name must be one path element", name)
	}
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	u, err := lookupServerUser()
	if err != nil {
		return nil, err
	}
	base, err := filepath.Abs(baseDir)
	if err != nil {
		return nil, fmt.Errorf("create server %q: %w", name, err)
	}
	root := filepath.Join(base, name)
	if entries, err := os.ReadDir(root); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("create server %q: directory %q is not empty", name, root)
	}
	reapOrphansOnce.Do(reapOrphans)
	if err := prepareDir(root, u); err != nil {
		return nil, fmt.Errorf("create server %q: %w", name, err)
	}
	if err := writeOwner(root); err != nil {
		_ = os.RemoveAll(root)
		return nil, fmt.Errorf("create server %q: %w", name, err)
	}
	p := &PG{
		Name:    name,
		Dir:     filepath.Join(root, "data"),
		Root:    root,
		LogFile: filepath.Join(root, "postgres.log"),
		bin:     bin,
		user:    u,
		sockDir: root,
	}
	// A Unix socket path must fit in 107 bytes, lock file suffix included.
	if len(root)+len("/.s.PGSQL.65535.lock") > 100 {
		dir, err := os.MkdirTemp("", "pgsock")
		if err == nil {
			err = prepareDir(dir, u)
		}
		if err != nil {
			_ = os.RemoveAll(root)
			return nil, fmt.Errorf("create server %q: socket directory: %w", name, err)
		}
		p.sockDir, p.ownSock = dir, true
	}
	return p, nil
}

// runTool runs one of the PostgreSQL programs as the server user and returns an
// error holding the end of its output when it fails.
func (p *PG) runTool(ctx context.Context, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, name), args...)
	cmd.Dir = p.Root
	cmd.Env = childEnv(p.Root)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.user.cred}
	err := StartProcess(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: run %s: %w", p.Name, name, ctx.Err())
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > logTailBytes {
			msg = "..." + msg[len(msg)-logTailBytes:]
		}
		return fmt.Errorf("%s: run %s: %w\n%s", p.Name, name, err, msg)
	}
	return nil
}

// start runs the server and waits until it accepts connections, on a new free
// port when newPort is set, trying again when the port turns out to be taken.
// The caller holds p.mu.
func (p *PG) start(ctx context.Context, newPort bool) error {
	var err error
	for attempt := range 5 {
		if newPort {
			if p.Port, err = FreePort(); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
		} else if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: start: %w (after: %w)", p.Name, ctx.Err(), err)
			case <-time.After(500 * time.Millisecond):
			}
		}
		err = p.startOnce(ctx)
		if !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return err
}

// startOnce runs the server once and waits until it accepts connections.
func (p *PG) startOnce(ctx context.Context) error {
	var logStart int64
	if fi, err := os.Stat(p.LogFile); err == nil {
		logStart = fi.Size()
	}
	srv, err := p.launch()
	if err != nil {
		return err
	}
	p.srv = srv
	err = p.waitReady(ctx, srv)
	if err == nil {
		return nil
	}
	p.kill(srv)
	p.srv = nil
	logText := tail(p.LogFile, logTailBytes)
	if b, rerr := os.ReadFile(p.LogFile); rerr == nil && int64(len(b)) >= logStart {
		if s := string(b[logStart:]); strings.Contains(s, "could not bind") ||
			strings.Contains(s, "Address already in use") {
			return fmt.Errorf("%s: port %d: %w", p.Name, p.Port, errPortTaken)
		}
	}
	return fmt.Errorf("%s: start server on port %d: %w\nend of %s:\n%s",
		p.Name, p.Port, err, p.LogFile, logText)
}

// launch starts the postmaster without waiting for it.
func (p *PG) launch() (*server, error) {
	args := []string{"-D", p.Dir, "-p", strconv.Itoa(p.Port),
		"-c", "unix_socket_directories=" + p.sockDir}
	for _, s := range serverSettings {
		args = append(args, "-c", s)
	}
	logf, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", p.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), args...)
	cmd.Dir = p.Root
	cmd.Env = childEnv(p.Root)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group keeps a terminal's Ctrl-C away from it: the harness
	// decides when it stops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.user.cred}
	if err := StartProcess(cmd); err != nil {
		return nil, fmt.Errorf("%s: run postgres: %w", p.Name, err)
	}
	srv := &server{cmd: cmd, done: make(chan struct{})}
	go func() {
		srv.err = cmd.Wait()
		close(srv.done)
	}()
	return srv, nil
}

// waitReady polls until the server accepts connections, it exits, or the wait ends.
func (p *PG) waitReady(ctx context.Context, srv *server) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, p.DSN("postgres"))
		ccancel()
		if err == nil {
			cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(cctx)
			ccancel()
			return nil
		}
		select {
		case <-srv.done:
			return fmt.Errorf("postgres exited during start: %v", srv.err)
		case <-ctx.Done():
			return fmt.Errorf("wait for connections: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// kill ends a server run at once: the postmaster and all its children, stopped
// or not.
func (p *PG) kill(srv *server) {
	select {
	case <-srv.done:
		return
	default:
	}
	pid := srv.cmd.Process.Pid
	kids, _ := childPIDs(pid)
	_ = srv.cmd.Process.Signal(syscall.SIGKILL)
	for _, k := range kids {
		_ = signal(k, syscall.SIGKILL)
	}
	select {
	case <-srv.done:
	case <-time.After(killTimeout):
	}
}

// DSN returns the URL of database on this server, as user postgres without TLS.
func (p *PG) DSN(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable",
		p.Port, url.PathEscape(database))
}

// DSNVia returns the URL of database on this server reached through proxy pr.
func (p *PG) DSNVia(pr *Proxy, database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable",
		pr.Port(), url.PathEscape(database))
}

// Connect opens a connection to database. A connection attempt gives up after
// 10s even when ctx has no deadline.
func (p *PG) Connect(ctx context.Context, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(p.DSN(database))
	if err != nil {
		return nil, fmt.Errorf("%s: parse dsn: %w", p.Name, err)
	}
	cfg.ConnectTimeout = connectTimeout
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to database %q: %w", p.Name, database, err)
	}
	return conn, nil
}

// closeConn closes conn without waiting long for a server that does not answer.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// Exec runs sql on database postgres over a connection of its own.
func (p *PG) Exec(ctx context.Context, sql string, args ...any) error {
	return p.ExecDB(ctx, "postgres", sql, args...)
}

// ExecDB runs sql on database db over a connection of its own. Without arguments
// sql may hold several statements.
func (p *PG) ExecDB(ctx context.Context, db, sql string, args ...any) error {
	conn, err := p.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: exec %q: %w", p.Name, sql, err)
	}
	return nil
}

// QueryInt runs sql on database db over a connection of its own and returns the
// single integer it selects; NULL is an error.
func (p *PG) QueryInt(ctx context.Context, db, sql string, args ...any) (int64, error) {
	conn, err := p.Connect(ctx, db)
	if err != nil {
		return 0, err
	}
	defer closeConn(conn)
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: query %q: %w", p.Name, sql, err)
	}
	return n, nil
}

// WaitInt polls sql on database db until it selects want, returning the last
// error or value seen when ctx ends first.
func (p *PG) WaitInt(ctx context.Context, db string, want int64, sql string, args ...any) error {
	for {
		got, err := p.QueryInt(ctx, db, sql, args...)
		if err == nil && got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%s: wait for %q to select %d: %w (last error: %w)",
					p.Name, sql, want, ctx.Err(), err)
			}
			return fmt.Errorf("%s: wait for %q to select %d: %w (last value: %d)",
				p.Name, sql, want, ctx.Err(), got)
		case <-time.After(pollInterval):
		}
	}
}

// InsertRows inserts n rows into table of database db (a table with the harness
// schema: id, payload, created_at) and returns the highest id inserted.
func (p *PG) InsertRows(ctx context.Context, db, table string, n int) (int64, error) {
	sql := "with ins as (insert into " + pgx.Identifier{table}.Sanitize() +
		" (payload) select 'row ' || g from generate_series(1, $1::int) g returning id)" +
		" select coalesce(max(id), 0) from ins"
	return p.QueryInt(ctx, db, sql, n)
}

// HasRow reports whether table of database db holds the row with id.
func (p *PG) HasRow(ctx context.Context, db, table string, id int64) (bool, error) {
	n, err := p.QueryInt(ctx, db,
		"select count(*) from "+pgx.Identifier{table}.Sanitize()+" where id = $1", id)
	return n > 0, err
}

// WaitRow waits until table of database db holds the row with id.
func (p *PG) WaitRow(ctx context.Context, db, table string, id int64) error {
	return p.WaitInt(ctx, db, 1,
		"select count(*) from "+pgx.Identifier{table}.Sanitize()+" where id = $1", id)
}

// PID returns the process id of the postmaster, or 0 when it is not running.
func (p *PG) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil {
		return 0
	}
	return p.srv.cmd.Process.Pid
}

// Start starts a stopped server again on the same port and waits until it accepts
// connections.
func (p *PG) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return fmt.Errorf("%s: start: server closed", p.Name)
	case p.srv != nil:
		return fmt.Errorf("%s: start: already running", p.Name)
	}
	return p.start(ctx, false)
}

// Stop shuts the server down as pg_ctl stop -m fast would (SIGINT to the
// postmaster) and waits until it has exited, keeping its data. A frozen server is
// thawed first.
func (p *PG) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	srv := p.srv
	if srv == nil {
		return fmt.Errorf("%s: stop: not running", p.Name)
	}
	_ = p.thaw()
	if err := srv.cmd.Process.Signal(syscall.SIGINT); err != nil &&
		!errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: stop: %w", p.Name, err)
	}
	select {
	case <-srv.done:
		p.srv = nil
		return nil
	case <-time.After(stopTimeout):
		p.kill(srv)
		p.srv = nil
		return fmt.Errorf("%s: stop: no exit within %s, killed", p.Name, stopTimeout)
	}
}

// Freeze stops (SIGSTOP) the postmaster and every child process of it, so that
// the server keeps its connections open but answers nothing, like a hung host. It
// returns once all of them are stopped.
func (p *PG) Freeze() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil {
		return fmt.Errorf("%s: freeze: not running", p.Name)
	}
	if p.frozen != nil {
		return nil
	}
	pid := p.srv.cmd.Process.Pid
	if err := p.srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("%s: freeze: %w", p.Name, err)
	}
	p.frozen = []int{pid}
	// A stopped postmaster forks no more, so its children are then a fixed set;
	// list them again until a pass finds none that is new.
	if err := waitStopped(pid, 5*time.Second); err != nil {
		_ = p.thaw()
		return fmt.Errorf("%s: freeze: %w", p.Name, err)
	}
	for range 20 {
		kids, err := childPIDs(pid)
		if err != nil {
			_ = p.thaw()
			return fmt.Errorf("%s: freeze: %w", p.Name, err)
		}
		found := false
		for _, k := range kids {
			if slices.Contains(p.frozen, k) {
				continue
			}
			err := signal(k, syscall.SIGSTOP)
			if err == nil {
				p.frozen = append(p.frozen, k)
				err = waitStopped(k, 5*time.Second)
			}
			if err != nil {
				_ = p.thaw()
				return fmt.Errorf("%s: freeze: %w", p.Name, err)
			}
			found = true
		}
		if !found {
			return nil
		}
	}
	return nil
}

// Thaw continues (SIGCONT) the processes Freeze stopped.
func (p *PG) Thaw() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.thaw()
}

// thaw continues the frozen processes, children first; the caller holds p.mu.
func (p *PG) thaw() error {
	var errs []error
	for i := len(p.frozen) - 1; i >= 0; i-- {
		if err := signal(p.frozen[i], syscall.SIGCONT); err != nil {
			errs = append(errs, err)
		}
	}
	p.frozen = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: thaw: %w", p.Name, err)
	}
	return nil
}

// Close thaws the server if frozen, shuts it down as pg_ctl stop -m immediate
// would (killing it if that takes too long) and removes its directory. It may be
// called more than once.
func (p *PG) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	if srv := p.srv; srv != nil {
		if err := p.thaw(); err != nil {
			errs = append(errs, err)
		}
		_ = srv.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-srv.done:
		case <-time.After(killTimeout):
			p.kill(srv)
		}
		p.srv = nil
	}
	if err := os.RemoveAll(p.Root); err != nil {
		errs = append(errs, err)
	}
	if p.ownSock {
		if err := os.RemoveAll(p.sockDir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: close: %w", p.Name, err)
	}
	return nil
}

// Kill ends the server at once, as a crash would: SIGKILL to the postmaster
// and to every child of it, frozen or not. It waits until all of them have
// exited. The data stays; Start runs the server again, which then recovers
// from the crash.
func (p *PG) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	srv := p.srv
	if srv == nil {
		return fmt.Errorf("%s: kill: not running", p.Name)
	}
	p.srv, p.frozen = nil, nil
	pid := srv.cmd.Process.Pid
	// A stopped postmaster forks no more: its children are then a fixed set,
	// found by their parent before they lose it.
	_ = signal(pid, syscall.SIGSTOP)
	_ = waitStopped(pid, 5*time.Second)
	kids, _ := childPIDs(pid)
	_ = signal(pid, syscall.SIGKILL)
	for _, k := range kids {
		_ = signal(k, syscall.SIGKILL)
	}
	select {
	case <-srv.done:
	case <-time.After(killTimeout):
		return fmt.Errorf("%s: kill: no exit within %s", p.Name, killTimeout)
	}
	// A child still alive holds the shared memory, which would stop a new
	// postmaster from starting.
	deadline := time.Now().Add(killTimeout)
	for _, k := range kids {
		for {
			st, err := readProcStat(k)
			if err != nil || st.state == 'Z' || st.state == 'X' {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: kill: process %d still there after %s", p.Name, k, killTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}
