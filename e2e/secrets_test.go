package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// requirePasswords makes p ask the given roles for a password (SCRAM) and
// gives each role its password and read access to a_rows. It undoes the
// authentication change when the test ends.
func requirePasswords(t *testing.T, p *dbtest.PG, roles map[string]string) {
	t.Helper()
	ctx := t.Context()
	var names []string
	for role, pw := range roles {
		names = append(names, role)
		stmts := []string{
			fmt.Sprintf("drop role if exists %s", role),
			fmt.Sprintf("create role %s login password '%s'", role, pw),
		}
		for _, q := range stmts {
			if err := p.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.ExecDB(ctx, dbtest.EnvDB, fmt.Sprintf("grant select on a_rows to %s", role)); err != nil {
			t.Fatal(err)
		}
	}
	hba := filepath.Join(p.Dir, "pg_hba.conf")
	orig, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("host all %s 127.0.0.1/32 scram-sha-256\n", strings.Join(names, ","))
	if err := os.WriteFile(hba, append([]byte(line), orig...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, "select pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(hba, orig, 0o600)
		p.Exec(t.Context(), "select pg_reload_conf()")
	})
}

func TestSecretsNeverShown(t *testing.T) {
	env := dbtest.SharedEnv(t)
	writer(t, env.Left, "a_rows")
	secrets := map[string]string{
		"mon_inline": "Inl1ne-S3cret-pw",
		"mon_file":   "F1le-S3cret-pw",
		"mon_env":    "Env1r0n-S3cret-pw",
		"mon_dsn":    "Emb3dded-S3cret-pw",
	}
	const wrong = "Wr0ng-S3cret-pw"
	requirePasswords(t, env.Left, secrets)

	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(secrets["mon_file"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SPENGLER_TEST_PW", secrets["mon_env"])
	base := fmt.Sprintf("127.0.0.1:%d/%s?sslmode=disable", env.Left.Port, dbtest.EnvDB)
	dbs := fmt.Sprintf(`
  s_inline: {driver: postgres, dsn: "postgres://mon_inline@%[1]s", password: "%[2]s"}
  s_file: {driver: postgres, dsn: "postgres://mon_file@%[1]s", password_file: "%[3]s"}
  s_env: {driver: postgres, dsn: "postgres://mon_env@%[1]s", password: "${SPENGLER_TEST_PW}"}
  s_dsn: {driver: postgres, dsn: "postgres://mon_dsn:%[4]s@%[1]s"}
  s_wrong: {driver: postgres, dsn: "postgres://mon_inline@%[1]s", password: "%[5]s"}
`, base, secrets["mon_inline"], pwFile, secrets["mon_dsn"], wrong)
	var pairs strings.Builder
	for _, name := range []string{"s_inline", "s_file", "s_env", "s_dsn", "s_wrong"} {
		fmt.Fprintf(&pairs, `
  - name: %[1]s
    left: %[1]s
    right: right
    directions: [left_to_right]
    selector: select id from a_rows order by id desc limit 5
    validator: select count(*) from a_rows where id = $1
`, name)
	}
	s := startStack(t, envConfig(env, dbs, pairs.String()))

	for _, name := range []string{"s_inline", "s_file", "s_env", "s_dsn"} {
		s.waitState(t, name, "left_to_right", "in_sync", 10*time.Second)
	}
	s.waitState(t, "s_wrong", "left_to_right", "error", detect)
	if st := s.direction(t, "s_wrong", "left_to_right"); !strings.Contains(st.Error,
		"password authentication failed") {
		t.Errorf("wrong password: error %q, want the server's refusal", st.Error)
	}

	pages := map[string]string{"spengler log": s.logs.String()}
	pages["/status"], _ = s.get(t, "/status")
	pages["/metrics"], _ = s.get(t, "/metrics")
	pages["/"], _ = s.get(t, "/")
	pages["/ as JSON"], _ = s.get(t, "/", "Accept", "application/json")
	for where, text := range pages {
		for _, secret := range append([]string{wrong}, values(secrets)...) {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the password %q", where, secret)
			}
		}
		if strings.Contains(text, "mon_dsn:") {
			t.Errorf("%s shows the DSN with its password", where)
		}
	}
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
