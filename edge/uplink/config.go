package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/unico-cdp/unico/internal/conf"
	"github.com/unico-cdp/unico/protocol"
)

// Defaults for zero Config fields.
const (
	DefaultMaxBatchEvents = 500
	DefaultMaxBatchBytes  = 256 << 10
	DefaultWindow         = 32
	DefaultAckTimeout     = 30 * time.Second
	DefaultMinBackoff     = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultKeepAlive      = 30 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	// DefaultQuarantineAfter is how many times the hub must refuse an
	// event sent on its own before it is quarantined.
	DefaultQuarantineAfter = 3
	// maxQuarantineAfter bounds QuarantineAfter.
	maxQuarantineAfter = 100

	// maxWindow bounds Window well below the in-flight limits of common
	// brokers (mochi's receive maximum is 1024, Mosquitto's 20 per client
	// by default is only a soft delay).
	maxWindow = 256
	// maxBatchBytesLimit keeps a batch payload well inside the hub's
	// decode limit (protocol.DefaultMaxPayload).
	maxBatchBytesLimit = protocol.DefaultMaxPayload / 2
)

// ErrConfig is returned by New when a Config field is invalid. The message
// names the field.
var ErrConfig = errors.New("invalid uplink config")

// Config configures a Forwarder. Zero fields take the documented defaults.
type Config struct {
	// BrokerURL is the hub's MQTT broker: mqtt://host[:1883] or
	// tcp://host[:1883] for plain TCP, mqtts://host[:8883] or
	// ssl://host[:8883] for TLS. Userinfo (mqtt://user:pass@host) sets
	// Username and Password unless those fields are set. Required.
	BrokerURL string
	// Username and Password authenticate to the broker. They override the
	// URL's userinfo.
	Username string
	Password conf.Secret
	// CAFile is a PEM bundle of CAs trusted for the broker's certificate;
	// empty means the system roots. CertFile and KeyFile are an optional
	// PEM client certificate and key. InsecureSkipVerify disables server
	// certificate checks (tests only). All need a TLS BrokerURL.
	CAFile             string
	CertFile           string
	KeyFile            string
	InsecureSkipVerify bool

	// Tenant and EdgeID name this edge in topics; both must pass
	// protocol.ValidName. Required.
	Tenant string
	EdgeID string
	// ClientID is the MQTT client id. Default "unico-edge-<EdgeID>".
	ClientID string

	// MaxBatchEvents bounds the events per batch. Default 500, at most
	// protocol.MaxBatchEvents.
	MaxBatchEvents int
	// MaxBatchBytes bounds the queued event bytes per batch (a single
	// larger event still travels alone). Default 256 KiB, at most 4 MiB.
	MaxBatchBytes int
	// Window is the number of batches in flight (published, not yet acked
	// by the hub). Default 32, at most 256: with 8, a drain of a large
	// backlog waited on round trips more than on the hub (1,000,000 events
	// to a hub on the same 2 cores drained at 14k events/s with 16, 19k
	// with 32 and 18k with 64), and the hub committed smaller groups and
	// sent more snapshots of the same profiles.
	Window int
	// AckTimeout is how long the forwarder waits for the hub's next ack
	// while batches are in flight before it tears the connection down,
	// reconnects and resends from the first unacked event. Default 30s.
	AckTimeout time.Duration
	// MinBackoff and MaxBackoff bound the capped exponential backoff (with
	// jitter) between connection attempts, before resending a batch the
	// hub answered with "retry" and before resending a single event the
	// hub rejected. Defaults 500ms and 30s.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// QuarantineAfter is how many times the hub must reject a batch of
	// one event before the forwarder moves that event to the quarantine
	// (when the Source implements Quarantiner); see the package
	// documentation. Default 3, at most 100.
	QuarantineAfter int
	// KeepAlive is the MQTT keepalive interval. Default 30s.
	KeepAlive time.Duration
	// WriteTimeout bounds a blocked publish; never zero (a zero write
	// timeout in paho breaks publishes at random). Default 10s.
	WriteTimeout time.Duration
	// ConnectTimeout bounds dialing and the MQTT handshake. Default 10s.
	ConnectTimeout time.Duration

	// Subscriptions are extra topics (snapshots, commands) subscribed at
	// QoS 1 on every connection. Handlers run on paho's goroutines and
	// must return quickly; they must not call back into the forwarder.
	Subscriptions map[string]func(payload []byte)
	// OnConnect, if set, is called after each successful connect and
	// subscribe, once Publish can use the new connection (for example to
	// announce a resume point to the hub). It runs on the forwarder's
	// goroutine and must return quickly; it may hand off to a goroutine
	// that calls Publish.
	OnConnect func()

	// Now is the clock for timestamps and the ack watchdog. Default
	// time.Now.
	Now func() time.Time
}

// broker is a parsed BrokerURL.
type broker struct {
	url      string // tcp://host:port or ssl://host:port, without userinfo
	host     string
	tls      bool
	username string
	password string
}

func parseBrokerURL(raw string) (broker, error) {
	if raw == "" {
		return broker{}, fmt.Errorf("%w: BrokerURL: required", ErrConfig)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return broker{}, fmt.Errorf("%w: BrokerURL: %w", ErrConfig, err)
	}
	var b broker
	port := ""
	switch u.Scheme {
	case "mqtt", "tcp":
		port = "1883"
	case "mqtts", "ssl", "tls":
		port = "8883"
		b.tls = true
	default:
		return broker{}, fmt.Errorf("%w: BrokerURL: scheme %q, want mqtt, mqtts, tcp or ssl", ErrConfig, u.Scheme)
	}
	b.host = u.Hostname()
	if b.host == "" {
		return broker{}, fmt.Errorf("%w: BrokerURL: missing host", ErrConfig)
	}
	if u.Path != "" && u.Path != "/" {
		return broker{}, fmt.Errorf("%w: BrokerURL: unexpected path %q", ErrConfig, u.Path)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	scheme := "tcp"
	if b.tls {
		scheme = "ssl"
	}
	b.url = scheme + "://" + net.JoinHostPort(b.host, port)
	if u.User != nil {
		b.username = u.User.Username()
		b.password, _ = u.User.Password()
	}
	return b, nil
}

func (c *Config) tlsConfig(b broker) (*tls.Config, error) {
	if !b.tls {
		switch {
		case c.CAFile != "":
			return nil, fmt.Errorf("%w: CAFile: set but BrokerURL is not mqtts:// or ssl://", ErrConfig)
		case c.CertFile != "" || c.KeyFile != "":
			return nil, fmt.Errorf("%w: CertFile: set but BrokerURL is not mqtts:// or ssl://", ErrConfig)
		}
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         b.host,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // documented as tests only
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CAFile: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CAFile: no PEM certificates in %s", ErrConfig, c.CAFile)
		}
		tc.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("%w: CertFile/KeyFile: both or neither must be set", ErrConfig)
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CertFile: %w", ErrConfig, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// withDefaults fills zero fields and validates the rest.
func (c Config) withDefaults() (Config, error) {
	if !protocol.ValidName(c.Tenant) {
		return c, fmt.Errorf("%w: Tenant: %q must be 1-64 characters of [A-Za-z0-9._-]", ErrConfig, c.Tenant)
	}
	if !protocol.ValidName(c.EdgeID) {
		return c, fmt.Errorf("%w: EdgeID: %q must be 1-64 characters of [A-Za-z0-9._-]", ErrConfig, c.EdgeID)
	}
	if c.ClientID == "" {
		c.ClientID = "unico-edge-" + c.EdgeID
	}
	type intField struct {
		name     string
		v        *int
		def, max int
	}
	for _, f := range []intField{
		{"MaxBatchEvents", &c.MaxBatchEvents, DefaultMaxBatchEvents, protocol.MaxBatchEvents},
		{"MaxBatchBytes", &c.MaxBatchBytes, DefaultMaxBatchBytes, maxBatchBytesLimit},
		{"Window", &c.Window, DefaultWindow, maxWindow},
		{"QuarantineAfter", &c.QuarantineAfter, DefaultQuarantineAfter, maxQuarantineAfter},
	} {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0 || *f.v > f.max:
			return c, fmt.Errorf("%w: %s: %d out of range 1..%d", ErrConfig, f.name, *f.v, f.max)
		}
	}
	type durField struct {
		name string
		v    *time.Duration
		def  time.Duration
	}
	for _, f := range []durField{
		{"AckTimeout", &c.AckTimeout, DefaultAckTimeout},
		{"MinBackoff", &c.MinBackoff, DefaultMinBackoff},
		{"MaxBackoff", &c.MaxBackoff, DefaultMaxBackoff},
		{"KeepAlive", &c.KeepAlive, DefaultKeepAlive},
		{"WriteTimeout", &c.WriteTimeout, DefaultWriteTimeout},
		{"ConnectTimeout", &c.ConnectTimeout, DefaultConnectTimeout},
	} {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0:
			return c, fmt.Errorf("%w: %s: negative duration %s", ErrConfig, f.name, *f.v)
		}
	}
	if c.MaxBackoff < c.MinBackoff {
		return c, fmt.Errorf("%w: MaxBackoff: %s is below MinBackoff %s", ErrConfig, c.MaxBackoff, c.MinBackoff)
	}
	if c.KeepAlive < time.Second {
		return c, fmt.Errorf("%w: KeepAlive: %s is below 1s", ErrConfig, c.KeepAlive)
	}
	for topic, h := range c.Subscriptions {
		if topic == "" || h == nil {
			return c, fmt.Errorf("%w: Subscriptions: empty topic or nil handler for %q", ErrConfig, topic)
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}
