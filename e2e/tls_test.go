package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spengler-dev/spengler/server"
)

// testCA is a certificate authority made up for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Spengler test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key,
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issueServer returns the PEM certificate and key of a server reachable as
// 127.0.0.1 and localhost, signed by ca.
func (ca *testCA) issueServer(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "spengler"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// offlineConfig is a Spengler configuration whose databases refuse
// connections: enough to serve every endpoint without a database server.
const offlineConfig = `
global: {interval: 1m, timeout: 2s, max_lag: 2m}
databases:
  east: {driver: postgres, dsn: "postgres://mon@127.0.0.1:1/app?sslmode=disable"}
  west: {driver: postgres, dsn: "postgres://mon@127.0.0.1:1/app?sslmode=disable"}
pairs:
  - name: orders
    left: east
    right: west
    selector: select id from orders order by id desc limit 10
    validator: select count(*) from orders where id = $1
`

// TestTLSAndBasicAuth runs the spengler binary with an exporter-toolkit web
// configuration (TLS and basic auth) and talks to it as a client that trusts
// only the test's CA.
func TestTLSAndBasicAuth(t *testing.T) {
	const user, password = "oncall", "c0rrect-h0rse"
	bin := buildSpengler(t)
	dir := t.TempDir()
	ca := newTestCA(t)
	certPEM, keyPEM := ca.issueServer(t)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := writeFile(t, dir, "web.yml", fmt.Sprintf(`
tls_server_config:
  cert_file: %s
  key_file: %s
basic_auth_users:
  %s: %s
`, writeFile(t, dir, "server.crt", string(certPEM)),
		writeFile(t, dir, "server.key", string(keyPEM)), user, hash))
	cfg := writeFile(t, dir, "spengler.yml", offlineConfig)
	addr := listenAddress(t)
	p := startSpengler(t, bin, "--config.file="+cfg, "--web.listen-address="+addr,
		"--web.config.file="+webConfig)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		},
	}
	base := "https://" + addr
	request := func(method, path string, auth ...string) (int, http.Header, string, error) {
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			return 0, nil, "", err
		}
		if len(auth) == 2 {
			req.SetBasicAuth(auth[0], auth[1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body), err
	}
	p.waitServing(t, 30*time.Second, func() error {
		_, _, _, err := request(http.MethodGet, "/-/healthy")
		return err
	})

	pages := []struct {
		path  string
		check func(body string) error
	}{
		{"/metrics", func(body string) error {
			if !strings.Contains(body, "spengler_config_last_reload_successful 1") ||
				!strings.Contains(body, "spengler_build_info{") {
				return errors.New("no spengler metrics")
			}
			return nil
		}},
		{"/status", func(body string) error {
			var st server.Status
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				return err
			}
			if len(st.Pairs) != 1 || st.Pairs[0].Name != "orders" {
				return fmt.Errorf("pairs %+v, want orders", st.Pairs)
			}
			return nil
		}},
		{"/", func(body string) error {
			if !strings.HasPrefix(body, "<!DOCTYPE html>") || !strings.Contains(body, `data-pair="orders"`) {
				return errors.New("not the status page")
			}
			return nil
		}},
		{"/-/healthy", func(body string) error {
			if body != "Healthy\n" {
				return errors.New("not healthy")
			}
			return nil
		}},
	}
	for _, pg := range pages {
		for _, tc := range []struct {
			name string
			auth []string
			want int
		}{
			{"no credentials", nil, http.StatusUnauthorized},
			{"wrong password", []string{user, password + "x"}, http.StatusUnauthorized},
			{"unknown user", []string{"intruder", password}, http.StatusUnauthorized},
			{"empty password", []string{user, ""}, http.StatusUnauthorized},
			{"credentials", []string{user, password}, http.StatusOK},
		} {
			code, header, body, err := request(http.MethodGet, pg.path, tc.auth...)
			if err != nil {
				t.Errorf("GET %s, %s: %v", pg.path, tc.name, err)
				continue
			}
			if code != tc.want {
				t.Errorf("GET %s, %s: status %d, want %d", pg.path, tc.name, code, tc.want)
				continue
			}
			if code == http.StatusUnauthorized {
				if !strings.Contains(header.Get("WWW-Authenticate"), "Basic") {
					t.Errorf("GET %s, %s: WWW-Authenticate %q, want a Basic challenge",
						pg.path, tc.name, header.Get("WWW-Authenticate"))
				}
				if strings.Contains(body, "orders") || strings.Contains(body, "spengler_") {
					t.Errorf("GET %s, %s: the refusal shows data: %q", pg.path, tc.name, body)
				}
				continue
			}
			if err := pg.check(body); err != nil {
				t.Errorf("GET %s, %s: %v\n%.300s", pg.path, tc.name, err, body)
			}
		}
	}

	// Reload goes through the same door.
	if code, _, _, err := request(http.MethodPost, "/-/reload"); err != nil ||
		code != http.StatusUnauthorized {
		t.Errorf("POST /-/reload without credentials: %d %v, want 401", code, err)
	}
	if code, _, body, err := request(http.MethodPost, "/-/reload", user, password); err != nil ||
		code != http.StatusOK {
		t.Errorf("POST /-/reload with credentials: %d %v %q, want 200", code, err, body)
	}

	// A client that does not trust the CA gets no connection.
	untrusting := &http.Client{Timeout: 10 * time.Second}
	_, err = untrusting.Get(base + "/metrics")
	var unknownAuthority x509.UnknownAuthorityError
	if !errors.As(err, &unknownAuthority) {
		t.Errorf("client without the CA: %v, want an unknown authority error", err)
	}
	// Plain HTTP gets no data.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "spengler_") {
			t.Errorf("plain HTTP: status %d, body %.100q; want 400 and no metrics",
				resp.StatusCode, body)
		}
	}
}

// TestBadWebConfigStops makes sure a web configuration that cannot be used
// stops spengler with an error, instead of serving without TLS.
func TestBadWebConfigStops(t *testing.T) {
	bin := buildSpengler(t)
	dir := t.TempDir()
	webConfig := writeFile(t, dir, "web.yml", `
tls_server_config:
  cert_file: /nonexistent/server.crt
  key_file: /nonexistent/server.key
`)
	cfg := writeFile(t, dir, "spengler.yml", offlineConfig)
	p := startSpengler(t, bin, "--config.file="+cfg, "--web.listen-address="+listenAddress(t),
		"--web.config.file="+webConfig)
	if code := p.exitCode(t, 30*time.Second); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if out := p.out.String(); !strings.Contains(out, "HTTP server failed") ||
		!strings.Contains(out, "server.crt") {
		t.Errorf("output does not say why it stopped:\n%s", out)
	}
}
