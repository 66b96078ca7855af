package dbtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvDB is the database the Env replicates.
const EnvDB = "app"

// StreamTable is the table on the Env's Primary that the Standby receives.
const StreamTable = "stream_rows"

// envTimeout bounds StartEnv when its context has no earlier deadline.
const envTimeout = 2 * time.Minute

// envDirPrefix starts the name of every Env directory, followed by the pid of the
// process that made it.
const envDirPrefix = "spengler-dbtest-"

// Env is a set of four servers, started together and shared by the tests of a
// package:
//
//   - Primary streams to Standby (physical replication of the whole cluster); its
//     database app holds table stream_rows.
//   - Left and Right replicate both ways with [Logical] in database app: a_rows is
//     written on Left, b_rows on Right.
//
// Primary and Left are separate servers, so that freezing, stopping or breaking
// one kind of replication leaves the other alone. The servers start in parallel;
// the whole takes a few seconds.
type Env struct {
	Primary, Standby, Left, Right *PG
	Logical                       *Logical
	// Dir is the temporary directory holding the servers, removed by Close.
	Dir string
}

// StartEnv starts an Env in a new temporary directory. It first kills the server
// processes and removes the directories that earlier test processes left behind
// when they died.
func StartEnv(ctx context.Context) (*Env, error) {
	if _, err := PostgresBinDir(); err != nil {
		return nil, err
	}
	reapOrphansOnce.Do(reapOrphans)
	removeStaleEnvDirs()
	ctx, cancel := context.WithTimeout(ctx, envTimeout)
	defer cancel()
	dir, err := os.MkdirTemp("", envDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("start env: %w", err)
	}
	e := &Env{Dir: dir}
	if err := e.start(ctx); err != nil {
		e.Close()
		return nil, fmt.Errorf("start env: %w", err)
	}
	return e, nil
}

// start starts the servers of e, in parallel where it can.
func (e *Env) start(ctx context.Context) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	run := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	startPG := func(name string, dst **PG) func() error {
		return func() error {
			p, err := StartPG(ctx, name, e.Dir)
			mu.Lock()
			*dst = p
			mu.Unlock()
			return err
		}
	}
	run(startPG("primary", &e.Primary))
	run(startPG("left", &e.Left))
	run(startPG("right", &e.Right))
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	run(func() error {
		err := EnsureDB(ctx, e.Primary, EnvDB)
		if err == nil {
			err = e.Primary.ExecDB(ctx, EnvDB, rowsTable(StreamTable, 1))
		}
		if err != nil {
			return err
		}
		s, err := StartStandby(ctx, e.Primary, "standby", e.Dir)
		mu.Lock()
		e.Standby = s
		mu.Unlock()
		return err
	})
	run(func() error {
		l, err := SetupLogical(ctx, e.Left, e.Right, EnvDB)
		mu.Lock()
		e.Logical = l
		mu.Unlock()
		return err
	})
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops every server of e, even a frozen one, and removes e.Dir.
func (e *Env) Close() {
	var wg sync.WaitGroup
	for _, p := range []*PG{e.Standby, e.Primary, e.Left, e.Right} {
		if p != nil {
			wg.Go(func() { _ = p.Close() })
		}
	}
	wg.Wait()
	_ = os.RemoveAll(e.Dir)
}

// removeStaleEnvDirs removes Env directories whose process is gone. Their servers
// died with that process, which started them with a parent-death signal.
func removeStaleEnvDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), envDirPrefix+"*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), envDirPrefix)
		pidText, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + pidText); err == nil {
			continue // still alive, or its pid taken again: leave it
		}
		_ = os.RemoveAll(d)
	}
}

// shared holds the Env that SharedEnv starts on first use.
var shared struct {
	once sync.Once
	env  *Env
	err  error
}

// Main runs the tests of a package whose tests use SharedEnv or SharedMariaEnv and
// returns the exit code; call it from TestMain as os.Exit(dbtest.Main(m)). It
// closes the shared Env and MariaEnv, if a test started them, after the tests
// have run. When the PostgreSQL binaries are missing it says so first; the tests
// that need them then skip, or fail when SPENGLER_REQUIRE_DB=1.
func Main(m *testing.M) int {
	if err := CheckBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	code := m.Run()
	if shared.env != nil {
		shared.env.Close()
	}
	closeSharedMaria()
	return code
}

// CheckBinaries returns nil when the PostgreSQL server binaries are installed, and
// otherwise an error saying which package to install and whether the tests that
// need them will skip or, with SPENGLER_REQUIRE_DB=1, fail.
func CheckBinaries() error {
	if Short() {
		return errShort
	}
	_, err := PostgresBinDir()
	if err == nil {
		return nil
	}
	if RequireDB() {
		return fmt.Errorf("%w; %s=1, so tests that need postgresql fail", err, requireDBEnv)
	}
	return fmt.Errorf("%w; tests that need postgresql skip (set %s=1 to make them fail)",
		err, requireDBEnv)
}

// SkipIfMissing skips tb when the PostgreSQL server binaries are missing, or
// fails it when SPENGLER_REQUIRE_DB=1.
func SkipIfMissing(tb testing.TB) {
	tb.Helper()
	if err := CheckBinaries(); err != nil {
		if RequireDB() {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
}

// SharedEnv returns the Env shared by the tests of this package, starting it on
// the first call; use it with [Main], which closes it. It skips tb when the
// binaries are missing (see [SkipIfMissing]) and fails tb when the Env could not
// start. Tests using it must leave the Env as they found it (healed, thawed,
// running) and must not run in parallel with tests that break it.
func SharedEnv(tb testing.TB) *Env {
	tb.Helper()
	SkipIfMissing(tb)
	shared.once.Do(func() {
		start := time.Now()
		shared.env, shared.err = StartEnv(context.Background())
		if shared.err == nil {
			tb.Logf("dbtest: started env in %s", time.Since(start).Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.env
}
