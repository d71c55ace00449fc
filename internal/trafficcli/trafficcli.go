// Package trafficcli is the command line shared by cmd/simulator (the
// demo's store traffic) and cmd/loadgen (benchmark load): flags, the run
// over package simulate, progress on stderr and a JSON summary on stdout.
// The two binaries differ only in their defaults.
package trafficcli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/internal/procs"
	"github.com/unico-cdp/unico/simulate"
)

// edgeList is a repeatable flag of comma-separated base URLs.
type edgeList []string

func (l *edgeList) String() string { return strings.Join(*l, ",") }

func (l *edgeList) Set(v string) error {
	for u := range strings.SplitSeq(v, ",") {
		u = strings.TrimSpace(u)
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("edge %q: want an http:// or https:// base URL", u)
		}
		*l = append(*l, strings.TrimSuffix(u, "/"))
	}
	return nil
}

// brokerList is a repeatable flag of comma-separated MQTT URLs.
type brokerList []string

func (l *brokerList) String() string { return strings.Join(*l, ",") }

func (l *brokerList) Set(v string) error {
	for u := range strings.SplitSeq(v, ",") {
		u = strings.TrimSpace(u)
		if !strings.HasPrefix(u, "mqtt://") && !strings.HasPrefix(u, "tcp://") {
			return fmt.Errorf("device broker %q: want an mqtt://host:port URL", u)
		}
		*l = append(*l, u)
	}
	return nil
}

// DefaultEdge is the edge agent addressed when no --edge is given.
const DefaultEdge = "http://127.0.0.1:8080"

// Program is what differs between the binaries built on this package.
type Program struct {
	// Name is the command's name in messages.
	Name string
	// Usage is the paragraph printed before the flags by --help.
	Usage string
	// Rate, Duration, Batch and Concurrency are the flags' defaults.
	Rate        float64
	Duration    time.Duration
	Batch       int
	Concurrency int
	// RequireEnd refuses a run with neither --duration nor --events.
	RequireEnd bool
	// RunIDPrefix starts generated run ids, followed by the seed and the
	// start time.
	RunIDPrefix string
}

// Options are the parsed flags.
type Options struct {
	edges       edgeList
	writeKey    string
	rate        float64
	duration    time.Duration
	events      int64
	population  int
	stores      int
	seed        int64
	batch       int
	concurrency int
	baskets     string
	truth       string
	countryCode string
	mix         string
	runID       string
	progress    time.Duration
	quiet       bool

	deviceMQTT    brokerList
	deviceCreds   string
	writeCreds    string
	frameInterval time.Duration
	minDwell      time.Duration
	exitTimeout   time.Duration
	rssiThreshold int
	maxVisits     int
	framesLog     string
}

// ParseFlags parses args for p; --help returns flag.ErrHelp after printing
// the usage to stderr.
func ParseFlags(p Program, args []string, stderr io.Writer) (*Options, error) {
	o := &Options{}
	fs := flag.NewFlagSet(p.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&o.edges, "edge", "edge agent base `URL`; repeat or separate with commas; store i's events go to edge i mod N (default "+DefaultEdge+")")
	fs.StringVar(&o.writeKey, "write-key", "", "write key sent as the HTTP Basic user")
	fs.Float64Var(&o.rate, "rate", p.Rate, "target events per second; 0 sends as fast as possible")
	durUsage := "stop generating after this long (0 = no limit)"
	if p.RequireEnd {
		durUsage = "stop generating after this long (0 = no limit, then --events must be set)"
	}
	fs.DurationVar(&o.duration, "duration", p.Duration, durUsage)
	fs.Int64Var(&o.events, "events", 0, "stop after this many events (0 = no limit); with --duration, whichever comes first")
	fs.IntVar(&o.population, "population", 10000, "number of synthetic persons")
	fs.IntVar(&o.stores, "stores", simulate.DefaultStores, "number of stores")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the population and the event sequence")
	fs.IntVar(&o.batch, "batch", p.Batch, "messages per /v1/batch request")
	fs.IntVar(&o.concurrency, "concurrency", p.Concurrency, "requests in flight")
	fs.StringVar(&o.baskets, "baskets", "", "optional Online Retail CSV `FILE` to draw real baskets from (default: built-in catalogue)")
	fs.StringVar(&o.truth, "truth", "", "write the ground truth as JSON Lines to `FILE` at the end")
	fs.StringVar(&o.countryCode, "country-code", simulate.DefaultCountryCode, "phone country calling code, without +; must match the edges'")
	fs.StringVar(&o.mix, "mix", "", "scenario weights, e.g. pos=30,kiosk=5,web=25,app=15,call=5,presence=20 (default that mix)")
	fs.StringVar(&o.runID, "run-id", "", "prefix of message and order ids (default "+p.RunIDPrefix+"<seed>-<start time>); reuse it to replay the same ids")
	fs.DurationVar(&o.progress, "progress", simulate.DefaultProgress, "interval of progress lines on stderr")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines and only warnings in the log")
	fs.Var(&o.deviceMQTT, "device-mqtt", "send presence as sensor frames (QoS 1) to the edges' device listeners, mqtt://host:port, one per --edge in the same order; repeat or separate with commas (default: presence as HTTP tracks). App beacons are identified over HTTP with traits.beacon_id: run the agents with --identifier-rules traits.beacon_id=beacon_id")
	fs.StringVar(&o.deviceCreds, "device-credentials", "", "`file` of sensor credentials, the agents' --device-credentials format (default: sensors connect without credentials)")
	fs.StringVar(&o.writeCreds, "write-device-credentials", "", "write fresh credentials for every simulated sensor of --stores stores to `file` and exit")
	fs.DurationVar(&o.frameInterval, "frame-interval", simulate.DefaultFrameInterval, "how often each sensor reports its sightings")
	fs.DurationVar(&o.minDwell, "presence-min-dwell", bridge.DefaultMinDwell, "the agents' --presence-min-dwell; visits are planned around it")
	fs.DurationVar(&o.exitTimeout, "presence-exit-timeout", bridge.DefaultExitTimeout, "the agents' --presence-exit-timeout")
	fs.IntVar(&o.rssiThreshold, "presence-rssi-threshold", bridge.DefaultRSSIThreshold, "the agents' --presence-rssi-threshold (dBm)")
	fs.StringVar(&o.framesLog, "frames-log", "", "write every PUBACKed sensor frame, with the edge and the time of its PUBACK, as JSON Lines to `FILE`, for checking the hub per identifier (simulate.ReadAckedLog)")
	fs.IntVar(&o.maxVisits, "max-visits", simulate.DefaultMaxVisits, "visits tracked at a time per edge, until their exit is due; further visits are skipped")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\n%s\n\nFlags:\n", p.Name, p.Usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if len(o.edges) == 0 {
		o.edges = edgeList{DefaultEdge}
	}
	switch {
	case o.rate < 0:
		return nil, errors.New("--rate must be >= 0")
	case o.duration < 0 || o.events < 0:
		return nil, errors.New("--duration and --events must be >= 0")
	case o.writeCreds != "":
		return o, nil
	case p.RequireEnd && o.duration == 0 && o.events == 0:
		return nil, errors.New("set --duration or --events: a load run must end by itself")
	case o.population <= 0:
		return nil, errors.New("--population must be > 0")
	case o.batch <= 0 || o.batch > 10000:
		return nil, errors.New("--batch must be 1 to 10000")
	case o.concurrency <= 0:
		return nil, errors.New("--concurrency must be > 0")
	case o.progress <= 0:
		return nil, errors.New("--progress must be > 0")
	case len(o.deviceMQTT) > 0 && len(o.deviceMQTT) != len(o.edges):
		return nil, fmt.Errorf("--device-mqtt: %d device listeners for %d edges, want one per --edge in the same order", len(o.deviceMQTT), len(o.edges))
	case len(o.deviceMQTT) == 0 && o.deviceCreds != "":
		return nil, errors.New("--device-credentials needs --device-mqtt")
	}
	return o, nil
}

// Summary is the JSON line printed at the end.
type Summary struct {
	simulate.Summary
	// CPUSeconds is the user plus system CPU time the generator used.
	CPUSeconds float64 `json:"cpu_s"`
	RunID      string  `json:"run_id"`
}

// Run parses args, sends the traffic and prints the summary. It returns the
// exit status: 0, 1 if an edge answered 400, no event at all was accepted or
// the run failed, 2 for bad flags.
func Run(ctx context.Context, p Program, args []string, stdout, stderr io.Writer) int {
	o, err := ParseFlags(p, args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, p.Name+":", err)
		return 2
	}
	level := slog.LevelInfo
	if o.quiet {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fail := func(err error) int {
		fmt.Fprintln(stderr, p.Name+":", err)
		return 2
	}
	if o.writeCreds != "" {
		if err := writeCredentials(o.writeCreds, o.stores); err != nil {
			fmt.Fprintln(stderr, p.Name+":", err)
			return 1
		}
		fmt.Fprintf(stderr, "%s: wrote credentials of %d sensors to %s; run the edge agents with --device-credentials %s --presence-zones %s\n",
			p.Name, o.stores*simulate.NumZones, o.writeCreds, o.writeCreds, simulate.ZoneMap())
		return 0
	}
	var frames *simulate.FrameConfig
	if len(o.deviceMQTT) > 0 {
		frames = &simulate.FrameConfig{Brokers: o.deviceMQTT, Interval: o.frameInterval, MinDwell: o.minDwell,
			ExitTimeout: o.exitTimeout, RSSIThreshold: o.rssiThreshold, MaxVisits: o.maxVisits}
		if o.deviceCreds != "" {
			if frames.Credentials, err = readCredentials(o.deviceCreds); err != nil {
				return fail(err)
			}
		}
	}
	var ackedLog *simulate.AckedLog
	if o.framesLog != "" {
		if frames == nil {
			return fail(errors.New("--frames-log needs --device-mqtt"))
		}
		f, err := os.Create(o.framesLog)
		if err != nil {
			return fail(fmt.Errorf("--frames-log: %w", err))
		}
		defer f.Close()
		ackedLog = simulate.NewAckedLog(f)
		frames.OnAcked = ackedLog.Add
	}

	mix, err := simulate.ParseMix(o.mix)
	if err != nil {
		return fail(fmt.Errorf("--mix: %w", err))
	}
	pop, err := simulate.NewPopulation(o.seed, o.population, simulate.PopulationOptions{Stores: o.stores, CountryCode: o.countryCode})
	if err != nil {
		return fail(err)
	}
	var baskets []simulate.Basket
	if o.baskets != "" {
		if baskets, err = simulate.LoadBaskets(o.baskets); err != nil {
			return fail(err)
		}
	}
	if o.runID == "" {
		o.runID = p.RunIDPrefix + strconv.FormatInt(o.seed, 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	gen, err := simulate.NewGenerator(pop, simulate.GeneratorConfig{Seed: o.seed, Mix: mix, Now: time.Now, RunID: o.runID, Baskets: baskets,
		PresenceFrames: frames != nil})
	if err != nil {
		return fail(err)
	}
	sender, err := simulate.NewSender(simulate.SenderConfig{WriteKey: o.writeKey, MaxConns: o.concurrency}, logger)
	if err != nil {
		return fail(err)
	}
	var truth *simulate.Truth
	if o.truth != "" {
		truth = simulate.NewTruth(pop)
	}
	cfg := simulate.RunConfig{
		Edges: o.edges, Sender: sender, Rate: o.rate, Duration: o.duration, Events: o.events,
		Batch: o.batch, Concurrency: o.concurrency, Truth: truth, Progress: o.progress, Frames: frames,
	}
	if !o.quiet {
		name := p.Name
		cfg.OnProgress = func(p simulate.Progress) {
			frames := ""
			if cfg.Frames != nil {
				frames = fmt.Sprintf(" visits=%d frames_acked=%d sightings_acked=%d %.0f frames/s", p.Visits, p.FramesAcked, p.SightingsAcked, p.FrameRate)
			}
			fmt.Fprintf(stderr, "%s: %6.1fs accepted=%d rejected=%d retries=%d %.0f events/s p50=%.2fms p99=%.2fms%s\n",
				name, p.Elapsed.Seconds(), p.Accepted, p.Rejected, p.Retries, p.Rate, float64(p.P50)/1e6, float64(p.P99)/1e6, frames)
		}
	}
	logger.Info("load started", "edges", len(o.edges), "population", o.population, "seed", o.seed, "run_id", o.runID, "rate", o.rate)
	sum, runErr := simulate.Run(ctx, gen, cfg, logger)
	code := 0
	switch {
	case runErr != nil:
		logger.Error("run failed", "err", runErr)
		code = 1
	case sum.Frames != nil && sum.Frames.FramesSent > 0 && sum.Frames.FramesAcked == 0:
		logger.Error("no sensor frame was acknowledged: are the device listeners right?", "frames", sum.Frames.FramesSent)
		code = 1
	case sum.Sent > 0 && sum.Accepted == 0:
		logger.Error("no event was accepted: are the edges reachable and the write key right?", "sent", sum.Sent, "rejected", sum.Rejected)
		code = 1
	}
	if ackedLog != nil {
		if err := ackedLog.Flush(); err != nil {
			logger.Error("writing the PUBACKed frames failed", "err", err)
			code = 1
		}
	}
	if truth != nil {
		if err := writeTruth(o.truth, truth); err != nil {
			logger.Error("writing ground truth failed", "err", err)
			code = 1
		}
	}
	out := Summary{Summary: sum, CPUSeconds: procs.SelfCPUSeconds(), RunID: o.runID}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		return 1
	}
	return code
}

func readCredentials(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--device-credentials: %w", err)
	}
	defer f.Close()
	return simulate.ReadCredentials(f, path)
}

func writeCredentials(path string, stores int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("--write-device-credentials: %w", err)
	}
	if err := simulate.WriteCredentials(f, stores); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--write-device-credentials: %w", err)
	}
	return nil
}

func writeTruth(path string, t *simulate.Truth) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create truth file: %w", err)
	}
	if err := t.WriteTruth(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close truth file: %w", err)
	}
	return nil
}
