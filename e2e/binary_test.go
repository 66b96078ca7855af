package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// buildSpengler builds the spengler command from the module root into a
// temporary directory and returns the path of the binary. It builds with
// the race detector when the tests run with it, so that a race in main
// fails the test that runs the binary.
func buildSpengler(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "spengler")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(t.Context(), goBin, append(args, ".")...)
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built spengler in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// process is a running spengler binary.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed once the process has exited and err is set
	err  error
}

// startSpengler runs bin with args. The process is killed when the test
// ends if it is still running, and its output is logged if the test failed.
func startSpengler(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// A race-enabled binary waits a second at exit unless told otherwise.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	p.cmd.Env = append(os.Environ(), "GORACE="+gorace)
	if err := dbtest.StartProcess(p.cmd); err != nil {
		t.Fatalf("start spengler: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.running() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("spengler output:\n%s", p.out.String())
		}
	})
	return p
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// exitCode waits up to limit for the process to exit and returns its exit
// code, or fails the test.
func (p *process) exitCode(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		// Have the Go runtime print every goroutine, to show where it hangs.
		p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		t.Fatalf("spengler still running %v after it was told to stop", limit)
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("spengler killed by %v", ws.Signal())
		}
		return exit.ExitCode()
	default:
		t.Fatalf("wait for spengler: %v", p.err)
		return -1
	}
}

// waitServing polls try until it succeeds, the process exits, or limit
// passes.
func (p *process) waitServing(t *testing.T, limit time.Duration, try func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := try()
		if err == nil {
			return
		}
		if !p.running() {
			t.Fatalf("spengler exited before serving (%v): %v", p.err, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("spengler not serving after %v: %v", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listenAddress returns a free loopback address for the exporter.
func listenAddress(t *testing.T) string {
	t.Helper()
	port, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// writeFile writes data to name in dir and returns the path.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
