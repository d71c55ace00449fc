package uplink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/unico-cdp/unico/internal/brokerstop"
)

// testCA writes a CA certificate to dir and returns a server certificate
// for 127.0.0.1 signed by it, and the CA file's path.
func testCA(t *testing.T, dir string) (tls.Certificate, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "unico test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "hub"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}, caFile
}

// TestTLS forwards over a TLS listener, trusting the broker through CAFile,
// and refuses a broker whose certificate is not trusted.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, caFile := testCA(t, dir)
	s := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	tlsLn := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0", TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	plainLn := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	for _, ln := range []*listeners.TCP{tlsLn, plainLn} {
		if err := s.AddListener(ln); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = brokerstop.Close(s, "tls", "tcp") })
	r := startResponder(t, plainLn.Address(), ackAll)

	tests := []struct {
		name    string
		mod     func(*Config)
		connect bool
	}{
		{"trusted CA", func(c *Config) { c.CAFile = caFile }, true},
		{"insecure skip verify", func(c *Config) { c.InsecureSkipVerify = true }, true},
		{"untrusted", func(*Config) {}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newMemSource()
			src.add(t, 200)
			cfg := testConfig(tlsLn.Address())
			cfg.BrokerURL = "mqtts://" + tlsLn.Address()
			tt.mod(&cfg)
			f, err := New(cfg, testLogger(t), src)
			if err != nil {
				t.Fatal(err)
			}
			stop := runForwarder(t, f)
			if tt.connect {
				waitFor(t, 20*time.Second, "source drained", func() bool { n, _ := src.remaining(); return n == 0 })
			} else {
				waitFor(t, 20*time.Second, "reconnect attempts", func() bool { return f.Stats().Reconnects >= 2 })
				if st := f.Stats(); st.BatchesSent != 0 || st.Connected {
					t.Errorf("stats = %+v: connected to an untrusted broker", st)
				}
			}
			stop()
		})
	}
	if got := r.distinct(); got != 200 {
		t.Errorf("hub saw %d distinct events, want 200", got)
	}
}
