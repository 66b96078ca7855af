package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
	"github.com/spengler-dev/spengler/server"
)

// TestConfigCheck runs --config.check on a good and a bad file.
func TestConfigCheck(t *testing.T) {
	bin := buildSpengler(t)
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yml", `
databases:
  a: {driver: postgres, dsn: "postgres://monitor:Pw-in-dsn-77@127.0.0.1:1/app"}
  b: {driver: mysql, dsn: "monitor@tcp(127.0.0.1:1)/app", password: Pw-inline-78}
pairs:
  - name: orders
    left: a
    right: b
    selector: select id from orders order by id desc limit 5
    left_to_right:
      validator: select count(*) from orders where id = ?
    right_to_left:
      validator: select count(*) from orders where id = $1
`)
	bad := writeFile(t, dir, "bad.yml", `
databases:
  a: {driver: postgres, dsn: "postgres://monitor:Pw-in-dsn-77@127.0.0.1:1/app"}
pairs:
  - name: orders
    left: a
    right: nowhere
    selector: select id from orders order by id desc limit 5
    validator: select count(*) from orders where id = $1
`)
	tests := []struct {
		name     string
		file     string
		wantCode int
		want     string
	}{
		{"good", good, 0, good + ": OK: 2 databases, 1 pairs, 2 directions"},
		{"bad", bad, 1, bad + `:7: pairs[0].right: unknown database "nowhere"`},
		{"missing", dir + "/none.yml", 1, dir + "/none.yml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(bin, "--config.check", "--config.file="+tc.file).CombinedOutput()
			code := 0
			if exit, ok := err.(*exec.ExitError); ok {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode || !strings.Contains(string(out), tc.want) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tc.wantCode, tc.want)
			}
			for _, secret := range []string{"Pw-in-dsn-77", "Pw-inline-78"} {
				if strings.Contains(string(out), secret) {
					t.Errorf("output shows a password:\n%s", out)
				}
			}
		})
	}
}

// sighupConfig is a configuration of one pair of the shared Env.
const sighupConfig = `
global: {interval: 1s, timeout: 1s, max_lag: 10s}
databases:
  left: {driver: postgres, dsn: "%s"}
  right: {driver: postgres, dsn: "%s"}
pairs:
  - name: %s
    left: left
    right: right
    directions: [left_to_right]
    selector: select id, created_at as ts from a_rows order by id desc limit 20
    validator: select count(*) from a_rows where id = $1
`

// TestSIGHUPReloads changes the configuration file of a running binary and
// sends SIGHUP: the new pair replaces the old; a bad file then keeps the
// running configuration and sets the reload gauge to 0.
func TestSIGHUPReloads(t *testing.T) {
	env := dbtest.SharedEnv(t)
	bin := buildSpengler(t)
	writer(t, env.Left, "a_rows")
	left, right := env.Left.DSN(dbtest.EnvDB), env.Right.DSN(dbtest.EnvDB)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "spengler.yml", fmt.Sprintf(sighupConfig, left, right, "before"))
	addr := listenAddress(t)
	p := startSpengler(t, bin, "--config.file="+cfg, "--web.listen-address="+addr)

	get := func(path string) (string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	pairs := func() ([]string, error) {
		body, err := get("/status")
		if err != nil {
			return nil, err
		}
		var st server.Status
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			return nil, err
		}
		var names []string
		for _, pr := range st.Pairs {
			names = append(names, pr.Name)
		}
		return names, nil
	}
	waitPairs := func(want ...string) {
		t.Helper()
		p.waitServing(t, 10*time.Second, func() error {
			got, err := pairs()
			if err == nil && !slices.Equal(got, want) {
				err = fmt.Errorf("pairs %v, want %v", got, want)
			}
			return err
		})
	}
	waitPairs("before")

	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(sighupConfig, left, right, "after")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitPairs("after")

	if err := os.WriteFile(cfg, []byte("pairs: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitServing(t, 10*time.Second, func() error {
		body, err := get("/metrics")
		if err == nil && !strings.Contains(body, "spengler_config_last_reload_successful 0") {
			err = fmt.Errorf("reload gauge not 0 after a bad file")
		}
		return err
	})
	if got, err := pairs(); err != nil || !slices.Equal(got, []string{"after"}) {
		t.Errorf("after a bad file: pairs %v (%v), want the running configuration kept", got, err)
	}
	if out := p.out.String(); !strings.Contains(out, "spengler.yml") || !strings.Contains(out, "level=ERROR") {
		t.Errorf("the failed reload is not logged with the file:\n%s", out)
	}
	if !p.running() {
		t.Fatalf("spengler exited after a bad reload: %v", p.err)
	}
}
