// Command edge-agent runs the Unico edge agent in a store, call center or
// sensor gateway: Segment-compatible HTTP ingest, a durable Badger queue,
// store-and-forward to the hub over MQTT, and a local profile cache fed by
// the hub's snapshots for offline lookups.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/edge"
	"github.com/unico-cdp/unico/edge/cache"
	"github.com/unico-cdp/unico/edge/devices"
	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/edge/uplink"
	"github.com/unico-cdp/unico/internal/conf"
	"github.com/unico-cdp/unico/internal/logging"
	"github.com/unico-cdp/unico/protocol"
)

var version = "dev"

// defaultMemoryLimit keeps the agent under 60 MB of RSS while it ingests
// and drains at 100k events/s or more (README, "Memory"); minMemoryLimit
// is below the working set of an idle agent, where the collector would run
// without pause.
const (
	defaultMemoryLimit = 36 << 20
	minMemoryLimit     = 32 << 20
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("edge-agent", flag.ContinueOnError)
	var (
		cfg                        edge.Config
		writeKeys, overflow, rules string
		hubPassword, hashSalt      conf.Secret
		adminToken                 conf.Secret
		hashTypes                  string
		quota                      = conf.Bytes(queue.DefaultQuotaBytes)
		memLimit                   = conf.Bytes(defaultMemoryLimit)
		maxMsg                     = conf.Bytes(protocol.DefaultMaxMessageBytes)
		maxBatch                   = conf.Bytes(protocol.DefaultMaxBatchBytes)
		logLevel, logFormat        string
		check, showVersion         bool
	)
	fs.String(conf.ConfigFlag, "", "`file` of key = value lines (flag names without dashes)")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data/edge", "directory of the durable queue")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", ":8080", "address of the Segment-compatible HTTP API, /v1/status, /healthz and /metrics")
	fs.StringVar(&cfg.Uplink.BrokerURL, "hub-url", "mqtt://127.0.0.1:1883", "the hub's MQTT broker: `mqtt://host:port` or mqtts://host:port (user:password@ allowed)")
	fs.StringVar(&cfg.Uplink.Username, "hub-username", "", "MQTT username (overrides the URL's)")
	fs.Var(&hubPassword, "hub-password", "MQTT password (overrides the URL's)")
	fs.StringVar(&cfg.Uplink.CAFile, "hub-ca-file", "", "PEM `file` of CAs trusted for the broker's certificate (mqtts)")
	fs.StringVar(&cfg.Uplink.CertFile, "hub-cert-file", "", "PEM client certificate `file` (mqtts)")
	fs.StringVar(&cfg.Uplink.KeyFile, "hub-key-file", "", "PEM client key `file` (mqtts)")
	fs.StringVar(&cfg.Tenant, "tenant", "default", "tenant (company) this edge belongs to")
	fs.StringVar(&cfg.EdgeID, "edge-id", sanitize(host), "this edge's id, unique in the tenant ([A-Za-z0-9._-])")
	fs.StringVar(&cfg.Site, "site", "", "store or site id stamped on events (default: the edge id)")
	fs.StringVar(&writeKeys, "write-key", "", "accepted Segment write keys, comma-separated (empty: no authentication)")
	fs.StringVar(&cfg.Ingest.Map.DefaultChannel, "default-channel", "server", "channel of events whose context.channel names none: pos, kiosk, web, app, contact_center, iot, server")
	fs.StringVar(&cfg.Ingest.Map.DefaultCountryCode, "default-country-code", "", "calling code for national phone numbers, such as 44 or 39")
	fs.StringVar(&rules, "identifier-rules", "", "extra identifiers: `path=type,…` such as properties.card_number=loyalty_id")
	fs.Var(&quota, "quota-bytes", "disk quota of the queue (such as 512MiB, 2GB)")
	fs.Var(&memLimit, "memory-limit", "memory the agent keeps its Go heap within, and scales the queue's Badger memtables and block cache to (0: no limit, Badger defaults; GOMEMLIMIT applies)")
	fs.StringVar(&overflow, "overflow", "", "per-channel policy when the quota is reached: `channel=drop_oldest,…` (others get 429)")
	fs.Var(&maxMsg, "max-message-bytes", "largest Segment message")
	fs.Var(&maxBatch, "max-batch-bytes", "largest /v1/batch request body")
	fs.DurationVar(&cfg.Ingest.RetryAfter, "retry-after", 5*time.Second, "Retry-After sent with 429 and 503")
	fs.IntVar(&cfg.Uplink.MaxBatchEvents, "max-batch-events", 500, "events per batch sent to the hub")
	fs.IntVar(&cfg.Uplink.Window, "window", uplink.DefaultWindow, "batches in flight to the hub")
	fs.DurationVar(&cfg.Uplink.AckTimeout, "ack-timeout", 30*time.Second, "reconnect and resend when the hub has not acked for this long")
	fs.IntVar(&cfg.Uplink.QuarantineAfter, "quarantine-after", 3, "rejections by the hub of an event sent on its own before it is moved to the quarantine (1-100)")
	fs.Var(&adminToken, "admin-token", "bearer token of the operator endpoints (/v1/quarantine); empty: they answer only clients on this host")
	fs.Var(&hashSalt, "snapshot-hash-salt", "tenant salt the hub hashes identifier values of --snapshot-hash-types with; lookups hash the same way")
	fs.StringVar(&hashTypes, "snapshot-hash-types", cache.DefaultHashTypes, "identifier types whose values the hub sends hashed, comma-separated")
	fs.IntVar(&cfg.Snapshots.Buffer, "snapshot-buffer", cache.DefaultBuffer, "snapshot batches received and waiting to be applied; more are dropped and resent by the hub")
	var deviceCreds, zones string
	fs.StringVar(&cfg.Devices.ListenAddr, "device-mqtt-addr", "", "serve in-store sensors on this MQTT `address` (such as 127.0.0.1:1884); frames go to unico/v1/dev/<device id>/frame")
	fs.StringVar(&cfg.Devices.BrokerURL, "device-broker-url", "", "instead, take sensor frames from this local broker (`mqtt://host:port`)")
	fs.StringVar(&deviceCreds, "device-credentials", "", "`file` of device credentials for --device-mqtt-addr, one `device-id password` per line (empty: anonymous devices)")
	fs.StringVar(&zones, "presence-zones", "", "zone names of presence sensors: `number=name,…` such as 1=entrance,3=shoes")
	fs.IntVar(&cfg.Devices.Bridge.RSSIThreshold, "presence-rssi-threshold", -80, "weaker sightings (dBm) are ignored")
	fs.DurationVar(&cfg.Devices.Bridge.ExitTimeout, "presence-exit-timeout", 2*time.Minute, "presence.exit after this long without a sighting")
	fs.DurationVar(&cfg.Devices.Bridge.MinDwell, "presence-min-dwell", 30*time.Second, "shortest zone stay reported as presence.zone_dwell")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&check, "check-config", false, "validate the configuration and exit")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	fs.Usage = conf.Usage(fs, "UNICO")
	if err := conf.Load(fs, args, "UNICO"); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "edge-agent:", err)
		return 2
	}
	if showVersion {
		fmt.Println("edge-agent", version)
		return 0
	}
	log, err := logging.New(os.Stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "edge-agent:", err)
		return 2
	}
	cfg.Version = version
	cfg.Uplink.Password = hubPassword
	cfg.Ingest.AdminToken = adminToken.Reveal()
	cfg.Cache.HashSalt = hashSalt.Reveal()
	cfg.Cache.HashTypes = conf.SplitList(hashTypes)
	if cfg.Cache.HashTypes == nil {
		cfg.Cache.HashTypes = []string{}
	}
	for _, t := range cfg.Cache.HashTypes {
		if !protocol.ValidName(t) {
			fmt.Fprintf(os.Stderr, "edge-agent: snapshot-hash-types %q: want identifier types of [A-Za-z0-9._-]\n", t)
			return 2
		}
	}
	if cfg.Snapshots.Buffer < 1 || cfg.Snapshots.Buffer > 4096 {
		fmt.Fprintln(os.Stderr, "edge-agent: snapshot-buffer: want 1..4096")
		return 2
	}
	cfg.Queue.QuotaBytes = int64(quota)
	if memLimit < 0 || (memLimit > 0 && memLimit < minMemoryLimit) {
		fmt.Fprintf(os.Stderr, "edge-agent: memory-limit %s: want 0 (no limit) or at least %s\n", memLimit, conf.Bytes(minMemoryLimit))
		return 2
	}
	cfg.MemoryLimit = int64(memLimit)
	cfg.Ingest.Map.MaxMessageBytes = int(maxMsg)
	cfg.Ingest.Map.MaxBatchBytes = int(maxBatch)
	cfg.Ingest.WriteKeys = conf.SplitList(writeKeys)
	if cfg.Queue.Overflow, err = parseOverflow(overflow); err != nil {
		fmt.Fprintln(os.Stderr, "edge-agent:", err)
		return 2
	}
	if cfg.Devices.Credentials, err = readCredentials(deviceCreds); err != nil {
		fmt.Fprintln(os.Stderr, "edge-agent:", err)
		return 2
	}
	if cfg.Devices.Bridge.ZoneMap, err = parseZones(zones); err != nil {
		fmt.Fprintln(os.Stderr, "edge-agent:", err)
		return 2
	}
	if cfg.Devices.ListenAddr != "" || cfg.Devices.BrokerURL != "" {
		if _, err := devices.New(cfg.Devices, nil, nil); err != nil {
			fmt.Fprintln(os.Stderr, "edge-agent:", err)
			return 2
		}
	}
	if cfg.Ingest.Map.Rules, err = parseRules(rules); err != nil {
		fmt.Fprintln(os.Stderr, "edge-agent:", err)
		return 2
	}
	if _, err := protocol.NewMapper(cfg.Ingest.Map); err != nil {
		fmt.Fprintln(os.Stderr, "edge-agent:", err)
		return 2
	}
	agent, err := edge.New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "edge-agent:", err)
		return 2
	}
	if check {
		fmt.Println("configuration ok")
		return 0
	}
	if memLimit > 0 {
		debug.SetMemoryLimit(int64(memLimit))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("starting edge agent", "version", version, "memory_limit", memLimit.String())
	if err := agent.Run(ctx); err != nil {
		log.Error("edge agent failed", "err", err)
		return 1
	}
	return 0
}

func parseOverflow(s string) (map[string]queue.OverflowPolicy, error) {
	out := map[string]queue.OverflowPolicy{}
	for _, p := range conf.SplitList(s) {
		ch, pol, ok := strings.Cut(p, "=")
		if !ok || !protocol.KnownChannel(ch) {
			return nil, fmt.Errorf("overflow %q: want channel=policy with a known channel", p)
		}
		switch queue.OverflowPolicy(pol) {
		case queue.OverflowReject, queue.OverflowDropOldest:
			out[ch] = queue.OverflowPolicy(pol)
		default:
			return nil, fmt.Errorf("overflow %q: policy must be reject or drop_oldest", p)
		}
	}
	return out, nil
}

func parseRules(s string) ([]protocol.IdentifierRule, error) {
	var out []protocol.IdentifierRule
	for _, p := range conf.SplitList(s) {
		path, typ, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("identifier-rules %q: want path=type", p)
		}
		out = append(out, protocol.IdentifierRule{Path: path, Type: typ})
	}
	return out, nil
}

// readCredentials reads "device-id password" lines; # starts a comment.
func readCredentials(name string) (map[string]string, error) {
	if name == "" {
		return nil, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("device-credentials: %w", err)
	}
	out := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("device-credentials %s line %d: want \"device-id password\"", name, i+1)
		}
		out[strings.ToLower(f[0])] = f[1]
	}
	return out, nil
}

// parseZones parses "1=entrance,3=shoes".
func parseZones(s string) (map[uint8]string, error) {
	var out map[uint8]string
	for _, p := range conf.SplitList(s) {
		n, name, ok := strings.Cut(p, "=")
		z, err := strconv.ParseUint(n, 10, 8)
		if !ok || err != nil || name == "" {
			return nil, fmt.Errorf("presence-zones %q: want number=name with a number 0-255", p)
		}
		if out == nil {
			out = map[uint8]string{}
		}
		out[uint8(z)] = name
	}
	return out, nil
}

// sanitize turns a host name into a valid edge id.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "edge"
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
