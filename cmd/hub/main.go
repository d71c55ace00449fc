// Command hub runs the Unico hub: the embedded MQTT broker (or a client of
// an external one), batch intake, identity resolution, the profile store and
// the HTTP API with the web UI. `hub import` loads customer records from a
// CSV or JSON Lines file into a running hub.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/hub"
	"github.com/unico-cdp/unico/hub/identity"
	"github.com/unico-cdp/unico/hub/snapshot"
	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/internal/conf"
	"github.com/unico-cdp/unico/internal/logging"
)

var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "import" {
		os.Exit(runImport(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	var (
		cfg        hub.Config
		token      conf.Secret
		brokerPass conf.Secret
		rulesFile  string
		logLevel   string
		logFormat  string
		check      bool
		showVer    bool
		memLimit   conf.Bytes
		gcPercent  int
	)
	fs.String(conf.ConfigFlag, "", "`file` of key = value lines (flag names without dashes)")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data/hub", "directory of the profile store")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", ":8090", "address of the HTTP API, metrics and web UI")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", ":1883", "address of the embedded MQTT broker (ignored with --broker-url)")
	fs.StringVar(&cfg.BrokerURL, "broker-url", "", "use this external MQTT broker (`mqtt://host:port` or mqtts://) instead of the embedded one")
	fs.Var(&token, "admin-token", "bearer token required by /api/v1/ (required)")
	var brokerUser string
	fs.StringVar(&brokerUser, "broker-user", "", "username edges must present to the embedded broker (empty: anonymous)")
	fs.Var(&brokerPass, "broker-password", "password for --broker-user")
	fs.StringVar(&rulesFile, "identity-rules", "", "JSON `file` of identity rules (default: built-in rules, see README)")
	var scope, regions, traits, hashTypes string
	var hashSalt conf.Secret
	fs.StringVar(&scope, "snapshot-scope", "site", "which profiles each edge holds: site (seen at that edge), region (seen in its region), all")
	fs.StringVar(&regions, "snapshot-regions", "", "regions for --snapshot-scope region: `edge=region,…`")
	fs.StringVar(&traits, "snapshot-traits", strings.Join(snapshot.DefaultTraits, ","), "traits sent to the edges, comma-separated")
	fs.StringVar(&hashTypes, "snapshot-hash-types", strings.Join(snapshot.DefaultHashTypes, ","), "identifier types sent to the edges as salted SHA-256 hashes (empty: none)")
	fs.Var(&hashSalt, "snapshot-hash-salt", "tenant salt of those hashes; the edges need the same --snapshot-hash-salt")
	fs.DurationVar(&cfg.OffersRefresh, "offers-refresh", 10*time.Minute, "how often the product association model behind offers is rebuilt")
	fs.DurationVar(&cfg.Offers.Window, "offers-window", 30*24*time.Hour, `"bought X → buys Y within" this window; products bought within it are not offered`)
	fs.IntVar(&cfg.Offers.TopN, "offers-top", 3, "offers per profile")
	fs.IntVar(&cfg.CacheProfiles, "cache-profiles", store.DefaultCacheProfiles, "decoded profiles the writer keeps in memory")
	fs.IntVar(&cfg.CacheNodes, "cache-nodes", store.DefaultCacheNodes, "decoded identifiers the writer keeps in memory")
	fs.IntVar(&cfg.ValueThreshold, "value-threshold", store.DefaultValueThreshold, "`bytes` from which the store writes a value (event, profile) to Badger's value log instead of its tree: less compaction work, more disk")
	memLimit = 2 << 30
	fs.Var(&memLimit, "memory-limit", "soft limit of the hub's Go memory, e.g. `4GiB` (0: none); the garbage collector works harder near it, so raise it with larger caches")
	// 400, not Go's 100: under the memory limit the heap's peak is the
	// limit either way, and while the live heap is small the collector
	// runs a third as often (a 1,000,000-event drain: 60 s of hub CPU
	// instead of 73 at 200, same peak RSS).
	fs.IntVar(&gcPercent, "gc-percent", 400, "garbage collector target: heap growth in percent between collections (Go's GOGC); higher spends memory to save CPU, up to --memory-limit")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&check, "check-config", false, "validate the configuration and exit")
	fs.BoolVar(&showVer, "version", false, "print the version and exit")
	fs.Usage = conf.Usage(fs, "UNICO")
	if err := conf.Load(fs, args, "UNICO"); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "hub:", err)
		return 2
	}
	if showVer {
		fmt.Println("hub", version)
		return 0
	}
	log, err := logging.New(os.Stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hub:", err)
		return 2
	}
	// GOGC and GOMEMLIMIT in the environment stand unless the flags are
	// given.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["gc-percent"] || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if set["memory-limit"] || os.Getenv("GOMEMLIMIT") == "" {
		if memLimit > 0 {
			debug.SetMemoryLimit(int64(memLimit))
		} else {
			debug.SetMemoryLimit(math.MaxInt64)
		}
	}
	cfg.AdminToken = token.Reveal()
	if brokerUser != "" {
		cfg.BrokerUsers = map[string]string{brokerUser: brokerPass.Reveal()}
	}
	cfg.Snapshot.Scope = scope
	cfg.Snapshot.HashSalt = hashSalt.Reveal()
	cfg.Snapshot.Traits = conf.SplitList(traits)
	cfg.Snapshot.HashTypes = conf.SplitList(hashTypes)
	if cfg.Snapshot.HashTypes == nil {
		cfg.Snapshot.HashTypes = []string{}
	}
	for _, p := range conf.SplitList(regions) {
		e, r, ok := strings.Cut(p, "=")
		if !ok || e == "" || r == "" {
			fmt.Fprintf(os.Stderr, "hub: snapshot-regions %q: want edge=region\n", p)
			return 2
		}
		if cfg.Snapshot.Regions == nil {
			cfg.Snapshot.Regions = map[string]string{}
		}
		cfg.Snapshot.Regions[e] = r
	}
	if rulesFile != "" {
		r, err := loadRules(rulesFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hub:", err)
			return 2
		}
		cfg.Identity = r
	}
	h, err := hub.New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hub:", err)
		return 2
	}
	if check {
		fmt.Println("configuration ok")
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("starting hub", "version", version)
	if err := h.Run(ctx); err != nil {
		log.Error("hub failed", "err", err)
		return 1
	}
	return 0
}

func loadRules(name string) (*identity.Rules, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("identity-rules: %w", err)
	}
	r := identity.DefaultRules()
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(r); err != nil {
		return nil, fmt.Errorf("identity-rules %s: %w", name, err)
	}
	if err := r.Compile(); err != nil {
		return nil, fmt.Errorf("identity-rules %s: %w", name, err)
	}
	return r, nil
}
