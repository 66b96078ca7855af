package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// buildOnceBinary builds the spengler command into a temporary directory.
func buildOnceBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spengler")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runOnce runs spengler --once with cfg and returns its exit code and output.
func runOnce(t *testing.T, bin, cfg string, args ...string) (int, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "spengler.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--once", "--config.file=" + file,
		"--log.level=error"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String()
	case errors.As(err, &exit) && ctx.Err() == nil:
		return exit.ExitCode(), stdout.String()
	default:
		t.Fatalf("spengler --once: %v\nstderr:\n%s", err, stderr.String())
		return -1, ""
	}
}

// onceLogical is a config of the Env's logical pair alone, plus extras.
func onceLogical(env *dbtest.Env, extraDatabases, extraPairs string) string {
	return `
global: {interval: 1s, timeout: 1s, max_lag: 2s, max_rows: 20}
databases:
  left: {driver: postgres, dsn: "` + env.Left.DSN(dbtest.EnvDB) + `"}
  right: {driver: postgres, dsn: "` + env.Right.DSN(dbtest.EnvDB) + `"}
` + extraDatabases + `
pairs:
  - name: logical
    left: left
    right: right
    left_to_right:
      selector: select id, created_at as ts from a_rows order by id desc limit 20
      validator: select count(*) from a_rows where id = $1
    right_to_left:
      selector: select id, created_at as ts from b_rows order by id desc limit 20
      validator: select count(*) from b_rows where id = $1
` + extraPairs
}

func TestOnce(t *testing.T) {
	env := dbtest.SharedEnv(t)
	bin := buildOnceBinary(t)
	writer(t, env.Left, "a_rows")
	writer(t, env.Right, "b_rows")

	t.Run("healthy", func(t *testing.T) {
		code, out := runOnce(t, bin, onceLogical(env, "", ""))
		if code != 0 {
			t.Fatalf("exit %d, want 0; output:\n%s", code, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "IN_SYNC") ||
			!strings.HasPrefix(lines[1], "IN_SYNC") {
			t.Errorf("want two IN_SYNC lines, got:\n%s", out)
		}
	})

	t.Run("csv", func(t *testing.T) {
		code, out := runOnce(t, bin, onceLogical(env, "", ""), "--once.format=csv")
		if code != 0 {
			t.Fatalf("exit %d, want 0; output:\n%s", code, out)
		}
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("not CSV: %v\n%s", err, out)
		}
		want := []string{"synced,pair,direction,source,target,rows_checked,rows_missing," +
			"lag_seconds,duration_seconds,error",
			"true,logical,left_to_right,left,right,", "true,logical,right_to_left,right,left,"}
		if len(recs) != len(want) {
			t.Fatalf("got %d lines, want a header and one per direction:\n%s", len(recs), out)
		}
		for i, w := range want {
			if got := strings.Join(recs[i], ","); !strings.HasPrefix(got, w) {
				t.Errorf("line %d = %q, want it to start with %q", i+1, got, w)
			}
		}
	})

	t.Run("broken direction", func(t *testing.T) {
		ctx := t.Context()
		if err := env.Logical.BreakBToA(ctx); err != nil {
			t.Fatal(err)
		}
		defer env.Logical.HealBToA(context.Background())
		// Rows written from now on stay on the right.
		time.Sleep(500 * time.Millisecond)
		code, out := runOnce(t, bin, onceLogical(env, "", ""))
		if code != 2 {
			t.Fatalf("exit %d, want 2; output:\n%s", code, out)
		}
		if !strings.Contains(out, "OUT_OF_SYNC logical right_to_left") ||
			!strings.Contains(out, "IN_SYNC     logical left_to_right") {
			t.Errorf("want right_to_left out of sync and left_to_right in sync, got:\n%s", out)
		}
	})

	t.Run("unreachable database", func(t *testing.T) {
		port, err := dbtest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		dead := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", port, dbtest.EnvDB)
		code, out := runOnce(t, bin, onceLogical(env,
			`  dead: {driver: postgres, dsn: "`+dead+`"}`, `
  - name: gone
    left: left
    right: dead
    directions: [left_to_right]
    selector: select id from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = $1
`))
		if code != 3 {
			t.Fatalf("exit %d, want 3; output:\n%s", code, out)
		}
		if !strings.Contains(out, "ERROR       gone left_to_right (left -> dead)") {
			t.Errorf("want the unreachable direction reported as ERROR, got:\n%s", out)
		}
	})
}
