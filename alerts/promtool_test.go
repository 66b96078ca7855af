package alerts_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// lookTool returns the path of the named program of the Debian package
// prometheus. When it is missing it skips tb, or fails it when
// SPENGLER_REQUIRE_DB=1 (as in CI), where a skip would hide a gap.
func lookTool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " not found: install the Debian package prometheus " +
		"(apt-get install prometheus, or scripts/provision.sh prometheus)"
	if dbtest.RequireDB() {
		tb.Fatal(msg + "; SPENGLER_REQUIRE_DB=1, so this fails")
	}
	tb.Skip(msg + "; skipping (SPENGLER_REQUIRE_DB=1 makes this fail)")
	return ""
}

// promtool runs promtool with args in this directory and fails t, with its
// output, when it does not succeed.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin := lookTool(t, "promtool")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
	t.Logf("promtool %v:\n%s", args, out)
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool(t, "check", "rules", rulesPath)
}

func TestPromtoolTestRules(t *testing.T) {
	promtool(t, "test", "rules", ruleTestsPath)
}
