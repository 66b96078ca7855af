// Package dbtest starts throwaway PostgreSQL servers on loopback and sets up real
// replication between them, for tests and for the demo.
//
// Servers run from the installed PostgreSQL binaries (see [PostgresBinDir]), each in
// its own directory with its own free port, its Unix socket in that directory and its
// log in a file there. PostgreSQL refuses to run as root, so when this process is
// root the servers and the tools that write their data directories run as the
// unprivileged user postgres, or nobody when there is no such user.
//
// Every server is started so that the kernel kills it when this process exits, even
// on a crash, and [PG.Close] kills it and all its children even while frozen.
package dbtest

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// ErrNotInstalled is wrapped by the errors that report missing server binaries.
var ErrNotInstalled = errors.New("postgresql server binaries not installed")

// requireDBEnv names the environment variable that turns a skip into a failure.
const requireDBEnv = "SPENGLER_REQUIRE_DB"

// binDirEnv names the environment variable that overrides where the binaries are.
const binDirEnv = "SPENGLER_PG_BINDIR"

// PostgresBinDir returns the directory holding initdb, postgres and pg_basebackup:
// $SPENGLER_PG_BINDIR when set, else the highest version under
// /usr/lib/postgresql/*/bin that has initdb. Its error wraps [ErrNotInstalled] and
// names the Debian package to install.
func PostgresBinDir() (string, error) {
	if dir := os.Getenv(binDirEnv); dir != "" {
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("%s=%q: %w", binDirEnv, dir, err)
		}
		return dir, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(matches, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, m := range matches {
		dir := filepath.Dir(m)
		if checkBinDir(dir) == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: no initdb under /usr/lib/postgresql/*/bin; %s, or set %s",
		ErrNotInstalled, installHint, binDirEnv)
}

// installHint says how to install the binaries.
const installHint = "install the Debian package postgresql " +
	"(apt-get install postgresql, or scripts/provision.sh postgres)"

// checkBinDir reports whether dir holds every binary the harness runs.
func checkBinDir(dir string) error {
	for _, name := range []string{"initdb", "postgres", "pg_basebackup"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%w: no executable %q in %q; %s",
				ErrNotInstalled, name, dir, installHint)
		}
	}
	return nil
}

// versionOf returns the major version in /usr/lib/postgresql/VERSION/bin/initdb.
func versionOf(initdb string) int {
	v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	if err != nil {
		return -1
	}
	return v
}

// RequireDB reports whether SPENGLER_REQUIRE_DB=1, in which case tests that need
// database servers fail instead of skipping when the binaries are missing. With
// -short it is false: no server is started, and those tests skip.
func RequireDB() bool {
	return !Short() && os.Getenv(requireDBEnv) == "1"
}

// Short reports whether the tests run with -short, where no database server is
// started. A TestMain that starts servers must parse the flags first.
func Short() bool { return testing.Testing() && flag.Parsed() && testing.Short() }

// errShort is what the checks for server binaries report with -short.
var errShort = errors.New("-short: tests that need database servers skip")

// FreePort returns a loopback TCP port that was free a moment ago and that this
// process has not handed out before.
func FreePort() (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			return 0, fmt.Errorf("find free port: %w", err)
		}
		portsMu.Lock()
		seen := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if !seen {
			return port, nil
		}
	}
	return 0, errors.New("find free port: every port offered was already handed out")
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// StartProcess starts cmd so that the kernel signals it when this process exits,
// even by a crash: with cmd.SysProcAttr.Pdeathsig when set, else SIGKILL.
//
// Linux sends that signal when the thread that started the child exits, and Go may
// end threads before the process ends, so every child is started from one
// goroutine locked to its thread for the life of the process.
func StartProcess(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	spawnOnce.Do(func() {
		spawnc = make(chan spawnRequest)
		go spawner()
	})
	errc := make(chan error, 1)
	spawnc <- spawnRequest{cmd: cmd, errc: errc}
	return <-errc
}

type spawnRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

var (
	spawnOnce sync.Once
	spawnc    chan spawnRequest
)

// spawner starts the commands sent to it; it never returns, so its thread lives
// as long as the process.
func spawner() {
	runtime.LockOSThread()
	for req := range spawnc {
		req.errc <- req.cmd.Start()
	}
}

// serverUser is the account the servers run as.
type serverUser struct {
	name     string
	uid, gid int
	// cred is nil when this process is not root: servers then run as ourselves.
	cred *syscall.Credential
}

// lookupServerUser picks the account to run servers as: ourselves unless we are
// root, else postgres, else nobody.
var lookupServerUser = sync.OnceValues(func() (*serverUser, error) {
	if os.Geteuid() != 0 {
		return &serverUser{name: "self", uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
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
	return nil, fmt.Errorf("find unprivileged user to run postgresql as: %w", errors.Join(errs...))
})

// prepareDir creates dir for the server user: owned by it, mode 0700, and every
// directory above it searchable by it. When running as root that may add the
// search bit for others to directories above dir that we own (such as the 0700
// top directory of t.TempDir).
func prepareDir(dir string, u *serverUser) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory %q: %w", dir, err)
	}
	if u.cred == nil {
		return nil
	}
	if err := os.Chown(dir, u.uid, u.gid); err != nil {
		return fmt.Errorf("chown directory %q: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod directory %q: %w", dir, err)
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if err := makeSearchable(p, u); err != nil {
			return err
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// makeSearchable lets u traverse dir, adding the search bit for others if needed.
func makeSearchable(dir string, u *serverUser) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("stat directory %q: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := fi.Mode().Perm()
	switch {
	case int(st.Uid) == u.uid && mode&0o100 != 0,
		int(st.Gid) == u.gid && mode&0o010 != 0,
		mode&0o001 != 0:
		return nil
	}
	if err := os.Chmod(dir, fi.Mode()|0o001); err != nil {
		return fmt.Errorf("let user %q search directory %q: %w", u.name, dir, err)
	}
	return nil
}

// childEnv is the environment of the server processes: nothing of ours (no PG*
// variables that would redirect the tools), a C locale and a home they can read.
func childEnv(home string) []string {
	env := []string{"HOME=" + home, "LC_ALL=C", "LANG=C", "PATH=" + os.Getenv("PATH")}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return env
}

// tail returns about the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return ""
	}
	s := string(buf)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimSpace(s)
}
