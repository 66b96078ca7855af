package dbtest

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// ErrMariaDBNotInstalled is wrapped by the errors that report missing MariaDB
// server binaries.
var ErrMariaDBNotInstalled = errors.New("mariadb server binaries not installed")

// mariaBinDirEnv names the environment variable that overrides where the MariaDB
// binaries are.
const mariaBinDirEnv = "SPENGLER_MARIADB_BINDIR"

// mariaInstallHint says how to install the MariaDB binaries.
const mariaInstallHint = "install the Debian package mariadb-server " +
	"(apt-get install mariadb-server, or scripts/provision.sh mariadb)"

// MariaDBHost is the address every harness MariaDB server listens on.
const MariaDBHost = "127.0.0.1"

// MariaDBPaths locates the MariaDB programs the harness runs.
type MariaDBPaths struct {
	// Server is the server program, mariadbd.
	Server string
	// InstallDB is the program that creates a data directory, mariadb-install-db.
	InstallDB string
}

// basedir is the installation directory above the server program (/usr for
// /usr/sbin/mariadbd), where mariadb-install-db finds the server and its SQL files.
func (p MariaDBPaths) basedir() string {
	return filepath.Dir(filepath.Dir(p.Server))
}

// MariaDBBinaries finds mariadbd and mariadb-install-db: both in
// $SPENGLER_MARIADB_BINDIR when set, else in the usual system directories or on
// PATH. Its error wraps [ErrMariaDBNotInstalled] and names the Debian package
// mariadb-server.
func MariaDBBinaries() (MariaDBPaths, error) {
	if dir := os.Getenv(mariaBinDirEnv); dir != "" {
		var p MariaDBPaths
		var err error
		if p.Server, err = findExecutable("mariadbd", dir); err == nil {
			p.InstallDB, err = findExecutable("mariadb-install-db", dir)
		}
		if err != nil {
			return MariaDBPaths{}, fmt.Errorf("%s=%q: %w", mariaBinDirEnv, dir, err)
		}
		return p, nil
	}
	pathDirs := filepath.SplitList(os.Getenv("PATH"))
	var p MariaDBPaths
	var err error
	p.Server, err = findExecutable("mariadbd",
		append([]string{"/usr/sbin", "/usr/local/sbin", "/usr/libexec"}, pathDirs...)...)
	if err == nil {
		p.InstallDB, err = findExecutable("mariadb-install-db",
			append([]string{"/usr/bin", "/usr/local/bin", filepath.Dir(p.Server)}, pathDirs...)...)
	}
	if err != nil {
		return MariaDBPaths{}, fmt.Errorf("%w (or set %s)", err, mariaBinDirEnv)
	}
	return p, nil
}

// findExecutable returns the first executable file called name in dirs.
func findExecutable(name string, dirs ...string) (string, error) {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		path := filepath.Join(d, name)
		if fi, err := os.Stat(path); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%w: no executable %q in %s; %s",
		ErrMariaDBNotInstalled, name, strings.Join(dirs, ":"), mariaInstallHint)
}

// CheckMariaDB returns nil when the MariaDB server binaries are installed, and
// otherwise an error naming the package to install and saying whether the tests
// that need them will skip or, with SPENGLER_REQUIRE_DB=1, fail.
func CheckMariaDB() error {
	if Short() {
		return errShort
	}
	_, err := MariaDBBinaries()
	if err == nil {
		return nil
	}
	if RequireDB() {
		return fmt.Errorf("%w; %s=1, so tests that need mariadb fail", err, requireDBEnv)
	}
	return fmt.Errorf("%w; tests that need mariadb skip (set %s=1 to make them fail)",
		err, requireDBEnv)
}

// SkipIfMariaDBMissing skips tb when the MariaDB server binaries are missing, or
// fails it when SPENGLER_REQUIRE_DB=1.
func SkipIfMariaDBMissing(tb testing.TB) {
	tb.Helper()
	if err := CheckMariaDB(); err != nil {
		if RequireDB() {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
}

// mariaSettings are the options every MariaDB server runs with, after
// --no-defaults and before the per-server ones. Small buffers keep start-up fast;
// durability is traded for speed.
var mariaSettings = []string{
	"--bind-address=" + MariaDBHost,
	"--skip-name-resolve",
	"--character-set-server=utf8mb4",
	"--collation-server=utf8mb4_general_ci",
	"--log-bin=mariadb-bin",
	"--relay-log=relay-bin",
	"--binlog-format=ROW",
	"--log-slave-updates",
	"--gtid-strict-mode=1",
	"--auto-increment-increment=2",
	"--log-bin-trust-function-creators=1",
	"--sync-binlog=0",
	// A replica whose source hangs notices within this many seconds and reconnects.
	"--slave-net-timeout=10",
	"--max-connections=200",
	"--innodb-flush-log-at-trx-commit=0",
	"--innodb-doublewrite=0",
	"--innodb-use-native-aio=0",
	"--performance-schema=0",
}

// mariaInnoDBSettings size InnoDB small; mariadb-install-db gets them too, so that
// the files it creates fit the server.
var mariaInnoDBSettings = []string{
	"--innodb-buffer-pool-size=16M",
	"--innodb-log-file-size=8M",
	"--innodb-log-buffer-size=2M",
}

// MariaDB is one MariaDB server run by the harness. Its lifecycle methods (Start,
// Stop, Freeze, Thaw, Close) are serialised; the query helpers may be called
// concurrently with anything. The helpers connect as root, which has no password
// and may connect from 127.0.0.1 only.
type MariaDB struct {
	// Name names the server in messages and its directory under the base directory.
	Name string
	// Port is the loopback TCP port the server listens on.
	Port int
	// ServerID is the server's server_id and gtid_domain_id.
	ServerID int
	// Dir is the data directory.
	Dir string
	// Root is the server's own directory: it holds Dir, LogFile and usually the socket.
	Root string
	// LogFile is the server's error log.
	LogFile string

	paths   MariaDBPaths
	user    *serverUser
	socket  string
	sockDir string // a directory of its own holding the socket, removed by Close

	mu     sync.Mutex
	srv    *server
	frozen bool
	closed bool
}

// lookupMariaUser picks the account to run MariaDB as: ourselves unless we are
// root, else mysql, else nobody.
var lookupMariaUser = sync.OnceValues(func() (*serverUser, error) {
	if os.Geteuid() != 0 {
		return &serverUser{name: "self", uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	var errs []error
	for _, name := range []string{"mysql", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil || uid == 0 {
			errs = append(errs, fmt.Errorf("user %q: unusable uid %q", name, u.Uid))
			continue
		}
		return &serverUser{
			name: name, uid: uid, gid: gid,
			cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		}, nil
	}
	return nil, fmt.Errorf("find unprivileged user to run mariadb as: %w", errors.Join(errs...))
})

// StartMariaDB creates a new data directory in baseDir/name with
// mariadb-install-db (root may connect from 127.0.0.1 without a password, no
// test database), starts the server on a free loopback port and waits until it
// accepts connections.
//
// serverID (at least 1) becomes server_id and gtid_domain_id; the server runs
// with binary logging (ROW, GTID, log_slave_updates), gtid_strict_mode,
// auto_increment_increment=2 and auto_increment_offset 1 for an odd serverID and
// 2 for an even one, so that two servers replicating both ways never hand out the
// same id.
func StartMariaDB(ctx context.Context, name, baseDir string, serverID int) (*MariaDB, error) {
	if serverID < 1 {
		return nil, fmt.Errorf("create server %q: server id %d, want at least 1", name, serverID)
	}
	m, err := newMariaDB(name, baseDir, serverID)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--no-defaults", "--basedir=" + m.paths.basedir(),
		"--datadir=" + m.Dir, "--tmpdir=" + m.tmpDir(),
		"--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve", "--innodb-use-native-aio=0"},
		mariaInnoDBSettings...)
	err = m.runInstallDB(ctx, args)
	if err == nil {
		m.mu.Lock()
		err = m.start(ctx, true)
		m.mu.Unlock()
	}
	if err != nil {
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

// newMariaDB prepares the directory of a server that does not exist yet.
func newMariaDB(name, baseDir string, serverID int) (*MariaDB, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("create server %q: name must be one path element", name)
	}
	paths, err := MariaDBBinaries()
	if err != nil {
		return nil, err
	}
	u, err := lookupMariaUser()
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
	// The server works in its data directory, so the owner file one level up
	// lets reapOrphans find it.
	if err := writeOwner(root); err != nil {
		_ = os.RemoveAll(root)
		return nil, fmt.Errorf("create server %q: %w", name, err)
	}
	// Every server of its own temporary directory: a starting mariadbd deletes
	// the #sql* files in its tmpdir, which in a shared one (such as /tmp) are the
	// temporary tables of other servers, even of the system's MariaDB.
	if err := prepareDir(filepath.Join(root, "tmp"), u); err != nil {
		_ = os.RemoveAll(root)
		return nil, fmt.Errorf("create server %q: %w", name, err)
	}
	m := &MariaDB{
		Name:     name,
		ServerID: serverID,
		Dir:      filepath.Join(root, "data"),
		Root:     root,
		LogFile:  filepath.Join(root, "mariadb.log"),
		paths:    paths,
		user:     u,
		socket:   filepath.Join(root, "mariadb.sock"),
	}
	// A Unix socket path must fit in 107 bytes.
	if len(m.socket) > 100 {
		dir, err := os.MkdirTemp("", "mariasock")
		if err == nil {
			err = prepareDir(dir, u)
		}
		if err != nil {
			_ = os.RemoveAll(root)
			return nil, fmt.Errorf("create server %q: socket directory: %w", name, err)
		}
		m.sockDir, m.socket = dir, filepath.Join(dir, "mariadb.sock")
	}
	return m, nil
}

// tmpDir is the server's own temporary directory.
func (m *MariaDB) tmpDir() string {
	return filepath.Join(m.Root, "tmp")
}

// runInstallDB runs mariadb-install-db as the server user and returns an error
// holding the end of its output when it fails.
func (m *MariaDB) runInstallDB(ctx context.Context, args []string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, m.paths.InstallDB, args...)
	cmd.Dir = m.Root
	cmd.Env = childEnv(m.Root)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: m.user.cred}
	// The script runs mariadbd --bootstrap: when ctx ends, kill its whole group.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := StartProcess(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: run mariadb-install-db: %w", m.Name, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("%s: run mariadb-install-db: %w\n%s", m.Name, err,
			installDBErrors(out.String()))
	}
	return nil
}

// installDBErrors picks the lines that say what went wrong out of the long output
// of a failed mariadb-install-db, falling back to its end.
func installDBErrors(out string) string {
	var picked []string
	for line := range strings.Lines(out) {
		if strings.Contains(line, "ERROR") || strings.Contains(line, "got signal") {
			picked = append(picked, strings.TrimSpace(line))
		}
	}
	if len(picked) > 0 {
		msg := strings.Join(picked, "\n")
		if len(msg) > logTailBytes {
			msg = msg[:logTailBytes] + "..."
		}
		return msg
	}
	msg := strings.TrimSpace(out)
	if len(msg) > logTailBytes {
		msg = "..." + msg[len(msg)-logTailBytes:]
	}
	return msg
}

// start runs the server and waits until it accepts connections, on a new free
// port when newPort is set, trying again when the port turns out to be taken.
// The caller holds m.mu.
func (m *MariaDB) start(ctx context.Context, newPort bool) error {
	var err error
	for attempt := range 5 {
		if newPort {
			if m.Port, err = FreePort(); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
		} else if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: start: %w (after: %w)", m.Name, ctx.Err(), err)
			case <-time.After(500 * time.Millisecond):
			}
		}
		err = m.startOnce(ctx)
		if !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return err
}

// startOnce runs the server once and waits until it accepts connections.
func (m *MariaDB) startOnce(ctx context.Context) error {
	var logStart int64
	if fi, err := os.Stat(m.LogFile); err == nil {
		logStart = fi.Size()
	}
	srv, err := m.launch()
	if err != nil {
		return err
	}
	m.srv = srv
	err = m.waitReady(ctx, srv)
	if err == nil {
		return nil
	}
	killServer(srv)
	m.srv = nil
	logText := tail(m.LogFile, logTailBytes)
	if b, rerr := os.ReadFile(m.LogFile); rerr == nil && int64(len(b)) >= logStart {
		if s := string(b[logStart:]); strings.Contains(s, "Address already in use") ||
			strings.Contains(s, "Bind on TCP/IP port") {
			return fmt.Errorf("%s: port %d: %w", m.Name, m.Port, errPortTaken)
		}
	}
	return fmt.Errorf("%s: start mariadb on port %d: %w\nend of %s:\n%s",
		m.Name, m.Port, err, m.LogFile, logText)
}

// serverArgs returns the command line of the server.
func (m *MariaDB) serverArgs() []string {
	args := []string{"--no-defaults",
		"--basedir=" + m.paths.basedir(),
		"--datadir=" + m.Dir,
		"--tmpdir=" + m.tmpDir(),
		"--socket=" + m.socket,
		"--pid-file=" + filepath.Join(m.Root, "mariadb.pid"),
		"--log-error=" + m.LogFile,
		"--port=" + strconv.Itoa(m.Port),
		"--server-id=" + strconv.Itoa(m.ServerID),
		"--gtid-domain-id=" + strconv.Itoa(m.ServerID),
		"--auto-increment-offset=" + strconv.Itoa((m.ServerID-1)%2+1),
	}
	args = append(args, mariaSettings...)
	return append(args, mariaInnoDBSettings...)
}

// launch starts the server without waiting for it.
func (m *MariaDB) launch() (*server, error) {
	logf, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", m.Name, err)
	}
	defer logf.Close()
	if m.user.cred != nil {
		if err := os.Chown(m.LogFile, m.user.uid, m.user.gid); err != nil {
			return nil, fmt.Errorf("%s: chown log: %w", m.Name, err)
		}
	}
	cmd := exec.Command(m.paths.Server, m.serverArgs()...)
	cmd.Dir = m.Root
	cmd.Env = childEnv(m.Root)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group keeps a terminal's Ctrl-C away from it: the harness
	// decides when it stops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: m.user.cred}
	if err := StartProcess(cmd); err != nil {
		return nil, fmt.Errorf("%s: run mariadbd: %w", m.Name, err)
	}
	srv := &server{cmd: cmd, done: make(chan struct{})}
	go func() {
		srv.err = cmd.Wait()
		close(srv.done)
	}()
	return srv, nil
}

// waitReady polls until the server accepts connections, it exits, or the wait
// ends. The server that answers must be this one: its data directory is checked.
func (m *MariaDB) waitReady(ctx context.Context, srv *server) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		var datadir string
		err := m.withConn(cctx, "", func(c *sql.Conn) error {
			return c.QueryRowContext(cctx, "select @@datadir").Scan(&datadir)
		})
		ccancel()
		if err == nil {
			if filepath.Clean(datadir) == filepath.Clean(m.Dir) {
				return nil
			}
			err = fmt.Errorf("port %d is served by data directory %q", m.Port, datadir)
		}
		select {
		case <-srv.done:
			return fmt.Errorf("mariadbd exited during start: %v", srv.err)
		case <-ctx.Done():
			return fmt.Errorf("wait for connections: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// killServer kills a server run at once and waits a while for it to exit.
func killServer(srv *server) {
	select {
	case <-srv.done:
		return
	default:
	}
	_ = srv.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-srv.done:
	case <-time.After(killTimeout):
	}
}

// Addr returns the host:port the server listens on.
func (m *MariaDB) Addr() string {
	return net.JoinHostPort(MariaDBHost, strconv.Itoa(m.Port))
}

// DSN returns the go-sql-driver/mysql data source name of database db on this
// server for user with password: user:password@tcp(127.0.0.1:PORT)/db. An empty
// password leaves out the colon; db may be empty.
func (m *MariaDB) DSN(user, password, db string) string {
	return m.dsnAt(m.Addr(), user, password, db)
}

// DSNVia is DSN for the server reached through proxy pr.
func (m *MariaDB) DSNVia(pr *Proxy, user, password, db string) string {
	return m.dsnAt(pr.Addr(), user, password, db)
}

// dsnAt formats a data source name for addr.
func (m *MariaDB) dsnAt(addr, user, password, db string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", addr, db
	return cfg.FormatDSN()
}

// rootConnector returns a connector for root on database db that allows several
// statements in one Exec.
func (m *MariaDB) rootConnector(db string) (driver.Connector, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName = "root", "tcp", m.Addr(), db
	cfg.MultiStatements = true
	cfg.Timeout = connectTimeout
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	return c, nil
}

// OpenDB opens a database/sql handle for root on database db (which may be
// empty). Without arguments a statement run through it may hold several
// statements. The caller closes it.
func (m *MariaDB) OpenDB(db string) (*sql.DB, error) {
	c, err := m.rootConnector(db)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// withConn runs f on a connection of its own to database db, as root. The
// connection attempt gives up after 10s even when ctx has no deadline.
func (m *MariaDB) withConn(ctx context.Context, db string, f func(*sql.Conn) error) error {
	h, err := m.OpenDB(db)
	if err != nil {
		return err
	}
	defer h.Close()
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := h.Conn(cctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("%s: connect to database %q: %w", m.Name, db, err)
	}
	defer conn.Close()
	return f(conn)
}

// Exec runs query with no default database over a connection of its own.
func (m *MariaDB) Exec(ctx context.Context, query string, args ...any) error {
	return m.ExecDB(ctx, "", query, args...)
}

// ExecDB runs query on database db over a connection of its own. Without
// arguments query may hold several statements, which then share one session (so
// a leading "set sql_log_bin = 0" applies to the rest).
func (m *MariaDB) ExecDB(ctx context.Context, db, query string, args ...any) error {
	return m.withConn(ctx, db, func(c *sql.Conn) error {
		if _, err := c.ExecContext(ctx, query, args...); err != nil {
			return fmt.Errorf("%s: exec %q: %w", m.Name, query, err)
		}
		return nil
	})
}

// QueryInt runs query on database db over a connection of its own and returns
// the single integer it selects; NULL is an error.
func (m *MariaDB) QueryInt(ctx context.Context, db, query string, args ...any) (int64, error) {
	var n sql.NullInt64
	err := m.withConn(ctx, db, func(c *sql.Conn) error {
		if err := c.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
			return fmt.Errorf("%s: query %q: %w", m.Name, query, err)
		}
		if !n.Valid {
			return fmt.Errorf("%s: query %q: selected NULL", m.Name, query)
		}
		return nil
	})
	return n.Int64, err
}

// WaitInt polls query on database db until it selects want, returning the last
// error or value seen when ctx ends first.
func (m *MariaDB) WaitInt(ctx context.Context, db string, want int64, query string, args ...any) error {
	for {
		got, err := m.QueryInt(ctx, db, query, args...)
		if err == nil && got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%s: wait for %q to select %d: %w (last error: %w)",
					m.Name, query, want, ctx.Err(), err)
			}
			return fmt.Errorf("%s: wait for %q to select %d: %w (last value: %d)",
				m.Name, query, want, ctx.Err(), got)
		case <-time.After(pollInterval):
		}
	}
}

// quoteIdent quotes name as a MariaDB identifier.
func quoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// InsertRows inserts n rows into table of database db (a table with the harness
// schema: id, payload, created_at) in one statement and returns the highest id
// inserted, 0 when n is not positive.
func (m *MariaDB) InsertRows(ctx context.Context, db, table string, n int) (int64, error) {
	if n <= 0 {
		return 0, nil
	}
	var b strings.Builder
	b.WriteString("insert into " + quoteIdent(table) + " (payload) values ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "('row %d')", i+1)
	}
	b.WriteString(" returning id")
	query := b.String()
	var top int64
	err := m.withConn(ctx, db, func(c *sql.Conn) error {
		rows, err := c.QueryContext(ctx, query)
		if err != nil {
			return fmt.Errorf("%s: insert into %s: %w", m.Name, table, err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("%s: insert into %s: %w", m.Name, table, err)
			}
			top = max(top, id)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: insert into %s: %w", m.Name, table, err)
		}
		return nil
	})
	return top, err
}

// HasRow reports whether table of database db holds the row with id.
func (m *MariaDB) HasRow(ctx context.Context, db, table string, id int64) (bool, error) {
	n, err := m.QueryInt(ctx, db, "select count(*) from "+quoteIdent(table)+" where id = ?", id)
	return n > 0, err
}

// WaitRow waits until table of database db holds the row with id.
func (m *MariaDB) WaitRow(ctx context.Context, db, table string, id int64) error {
	return m.WaitInt(ctx, db, 1, "select count(*) from "+quoteIdent(table)+" where id = ?", id)
}

// MariaProcess is one row of information_schema.processlist.
type MariaProcess struct {
	// ID is the connection id, as KILL takes it.
	ID int64
	// User and Host are the account and client address; Host is empty for
	// server threads.
	User, Host string
	// DB is the default database, empty when none.
	DB string
	// Command is what the thread does: Query, Sleep, Binlog Dump, Slave_IO, ...
	Command string
	// Time is how long the thread has been in its state.
	Time time.Duration
	// State is the thread's state, such as "User sleep" or "Sending data".
	State string
	// Info is the statement the thread runs, empty when none.
	Info string
}

// ProcessList returns the server's threads from information_schema.processlist,
// leaving out the connection that reads it.
func (m *MariaDB) ProcessList(ctx context.Context) ([]MariaProcess, error) {
	const query = "select id, user, host, db, command, time_ms, state, info " +
		"from information_schema.processlist where id <> connection_id() order by id"
	var list []MariaProcess
	err := m.withConn(ctx, "", func(c *sql.Conn) error {
		rows, err := c.QueryContext(ctx, query)
		if err != nil {
			return fmt.Errorf("%s: read process list: %w", m.Name, err)
		}
		defer rows.Close()
		for rows.Next() {
			var p MariaProcess
			var user, host, db, command, state, info sql.NullString
			var ms sql.NullFloat64
			if err := rows.Scan(&p.ID, &user, &host, &db, &command, &ms, &state, &info); err != nil {
				return fmt.Errorf("%s: read process list: %w", m.Name, err)
			}
			p.User, p.Host, p.DB, p.Command = user.String, host.String, db.String, command.String
			p.State, p.Info = state.String, info.String
			p.Time = time.Duration(ms.Float64 * float64(time.Millisecond))
			list = append(list, p)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: read process list: %w", m.Name, err)
		}
		return nil
	})
	return list, err
}

// CountQueries returns how many connections (other than the one asking) are
// running a statement whose text contains match. A statement that was killed
// counts until it has ended.
func (m *MariaDB) CountQueries(ctx context.Context, match string) (int, error) {
	list, err := m.ProcessList(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range list {
		if p.Command != "Sleep" && p.Info != "" && strings.Contains(p.Info, match) {
			n++
		}
	}
	return n, nil
}

// WaitQueries polls until CountQueries(match) is want, returning the last error or
// count seen when ctx ends first.
func (m *MariaDB) WaitQueries(ctx context.Context, match string, want int) error {
	for {
		got, err := m.CountQueries(ctx, match)
		if err == nil && got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%s: wait for %d statements matching %q: %w (last error: %w)",
					m.Name, want, match, ctx.Err(), err)
			}
			return fmt.Errorf("%s: wait for %d statements matching %q: %w (last count: %d)",
				m.Name, want, match, ctx.Err(), got)
		case <-time.After(pollInterval):
		}
	}
}

// PID returns the process id of the server, or 0 when it is not running.
func (m *MariaDB) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv == nil {
		return 0
	}
	return m.srv.cmd.Process.Pid
}

// Start starts a stopped server again on the same port and data directory and
// waits until it accepts connections. Replication it was configured for starts
// with it.
func (m *MariaDB) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return fmt.Errorf("%s: start: server closed", m.Name)
	case m.srv != nil:
		return fmt.Errorf("%s: start: already running", m.Name)
	}
	return m.start(ctx, false)
}

// Stop shuts the server down cleanly (SIGTERM) and waits until it has exited,
// keeping its data. A frozen server is thawed first.
func (m *MariaDB) Stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	srv := m.srv
	if srv == nil {
		return fmt.Errorf("%s: stop: not running", m.Name)
	}
	_ = m.thaw()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil &&
		!errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: stop: %w", m.Name, err)
	}
	select {
	case <-srv.done:
		m.srv = nil
		return nil
	case <-time.After(stopTimeout):
		killServer(srv)
		m.srv = nil
		return fmt.Errorf("%s: stop: no exit within %s, killed", m.Name, stopTimeout)
	}
}

// Freeze stops (SIGSTOP) the server process, all its threads with it, so that the
// server keeps its connections open but answers nothing, like a hung host. It
// returns once the process is stopped.
func (m *MariaDB) Freeze() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv == nil {
		return fmt.Errorf("%s: freeze: not running", m.Name)
	}
	if m.frozen {
		return nil
	}
	pid := m.srv.cmd.Process.Pid
	if err := signal(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("%s: freeze: %w", m.Name, err)
	}
	m.frozen = true
	if err := waitStopped(pid, 5*time.Second); err != nil {
		_ = m.thaw()
		return fmt.Errorf("%s: freeze: %w", m.Name, err)
	}
	return nil
}

// Thaw continues (SIGCONT) the process Freeze stopped.
func (m *MariaDB) Thaw() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.thaw()
}

// thaw continues the frozen process; the caller holds m.mu.
func (m *MariaDB) thaw() error {
	if !m.frozen || m.srv == nil {
		m.frozen = false
		return nil
	}
	m.frozen = false
	if err := signal(m.srv.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("%s: thaw: %w", m.Name, err)
	}
	return nil
}

// Close kills the server, frozen or not, and removes its directory. It may be
// called more than once.
func (m *MariaDB) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if srv := m.srv; srv != nil {
		killServer(srv)
		m.srv = nil
		m.frozen = false
	}
	var errs []error
	if err := os.RemoveAll(m.Root); err != nil {
		errs = append(errs, err)
	}
	if m.sockDir != "" {
		if err := os.RemoveAll(m.sockDir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: close: %w", m.Name, err)
	}
	return nil
}

// Kill ends the server at once, as a crash would (SIGKILL), frozen or not,
// and waits until it has exited. The data stays; Start runs the server
// again, which then recovers from the crash.
func (m *MariaDB) Kill() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	srv := m.srv
	if srv == nil {
		return fmt.Errorf("%s: kill: not running", m.Name)
	}
	m.srv, m.frozen = nil, false
	killServer(srv)
	select {
	case <-srv.done:
		return nil
	default:
		return fmt.Errorf("%s: kill: no exit within %s", m.Name, killTimeout)
	}
}
