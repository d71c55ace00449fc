// Command simulator sends synthetic omnichannel traffic to Unico edge
// agents: POS sales, kiosk identifications, web and app sessions,
// contact-center calls and in-store presence, from a seeded population of
// customers with messy identifiers. It can write the ground truth (each
// person's identifiers, orders and revenue) for checking the hub's profiles.
//
// Progress goes to stderr every few seconds; a one-line JSON summary goes
// to stdout at the end. The exit status is 1 if an edge answered 400 (a
// generator bug) or the run failed, 2 for bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/simulate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// edgeList is a repeatable flag of comma-separated URLs.
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

const defaultEdge = "http://127.0.0.1:8080"

type options struct {
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
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("simulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&o.edges, "edge", "edge agent base `URL`; repeat the flag or separate with commas, one edge per store: store i's events go to edge i mod N (default "+defaultEdge+")")
	fs.StringVar(&o.writeKey, "write-key", "", "write key sent as the HTTP Basic user")
	fs.Float64Var(&o.rate, "rate", 100, "target events per second; 0 sends as fast as possible")
	fs.DurationVar(&o.duration, "duration", 0, "stop generating after this long (0 = no limit)")
	fs.Int64Var(&o.events, "events", 0, "stop after this many events (0 = no limit); with --duration, whichever comes first")
	fs.IntVar(&o.population, "population", 10000, "number of synthetic persons")
	fs.IntVar(&o.stores, "stores", simulate.DefaultStores, "number of stores")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the population and the event sequence")
	fs.IntVar(&o.batch, "batch", simulate.DefaultBatch, "messages per /v1/batch request")
	fs.IntVar(&o.concurrency, "concurrency", simulate.DefaultConcurrency, "requests in flight")
	fs.StringVar(&o.baskets, "baskets", "", "optional Online Retail CSV `FILE` to draw real baskets from (default: built-in catalogue)")
	fs.StringVar(&o.truth, "truth", "", "write the ground truth as JSON Lines to `FILE` at the end")
	fs.StringVar(&o.countryCode, "country-code", simulate.DefaultCountryCode, "phone country calling code, without +; must match the edge's")
	fs.StringVar(&o.mix, "mix", "", "scenario weights, e.g. pos=30,kiosk=5,web=25,app=15,call=5,presence=20 (default that mix)")
	fs.StringVar(&o.runID, "run-id", "", "prefix of message and order ids (default s<seed>-<start time>); reuse it to replay the same ids")
	fs.DurationVar(&o.progress, "progress", simulate.DefaultProgress, "interval of progress lines on stderr")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines and only warnings in the log")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: simulator [flags]\n\nSends synthetic Segment traffic to Unico edge agents (POST /v1/batch),\nretrying 429/503 after Retry-After. Prints progress to stderr and a JSON\nsummary to stdout. Exit status 1 if an edge answered 400 or the run failed.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if len(o.edges) == 0 {
		o.edges = edgeList{defaultEdge}
	}
	switch {
	case o.rate < 0:
		return nil, errors.New("--rate must be >= 0")
	case o.duration < 0 || o.events < 0:
		return nil, errors.New("--duration and --events must be >= 0")
	case o.population <= 0:
		return nil, errors.New("--population must be > 0")
	case o.batch <= 0 || o.batch > 10000:
		return nil, errors.New("--batch must be 1 to 10000")
	case o.concurrency <= 0:
		return nil, errors.New("--concurrency must be > 0")
	case o.progress <= 0:
		return nil, errors.New("--progress must be > 0")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "simulator:", err)
		return 2
	}
	level := slog.LevelInfo
	if o.quiet {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	mix, err := simulate.ParseMix(o.mix)
	if err != nil {
		fmt.Fprintln(stderr, "simulator: --mix:", err)
		return 2
	}
	pop, err := simulate.NewPopulation(o.seed, o.population, simulate.PopulationOptions{Stores: o.stores, CountryCode: o.countryCode})
	if err != nil {
		fmt.Fprintln(stderr, "simulator:", err)
		return 2
	}
	var baskets []simulate.Basket
	if o.baskets != "" {
		if baskets, err = simulate.LoadBaskets(o.baskets); err != nil {
			fmt.Fprintln(stderr, "simulator:", err)
			return 2
		}
		logger.Info("baskets loaded", "file", o.baskets, "baskets", len(baskets))
	}
	if o.runID == "" {
		o.runID = "s" + strconv.FormatInt(o.seed, 10) + "-" + strconv.FormatInt(time.Now().Unix(), 36)
	}
	gen, err := simulate.NewGenerator(pop, simulate.GeneratorConfig{Seed: o.seed, Mix: mix, Now: time.Now, RunID: o.runID, Baskets: baskets})
	if err != nil {
		fmt.Fprintln(stderr, "simulator:", err)
		return 2
	}
	sender, err := simulate.NewSender(simulate.SenderConfig{WriteKey: o.writeKey, MaxConns: o.concurrency}, logger)
	if err != nil {
		fmt.Fprintln(stderr, "simulator:", err)
		return 2
	}
	var truth *simulate.Truth
	if o.truth != "" {
		truth = simulate.NewTruth(pop)
	}
	cfg := simulate.RunConfig{
		Edges: o.edges, Sender: sender, Rate: o.rate, Duration: o.duration, Events: o.events,
		Batch: o.batch, Concurrency: o.concurrency, Truth: truth, Progress: o.progress,
	}
	if !o.quiet {
		cfg.OnProgress = func(p simulate.Progress) {
			fmt.Fprintf(stderr, "simulator: %6.1fs sent=%d accepted=%d rejected=%d retries=%d %.0f events/s p50=%.2fms p99=%.2fms\n",
				p.Elapsed.Seconds(), p.Sent, p.Accepted, p.Rejected, p.Retries, p.Rate,
				float64(p.P50)/1e6, float64(p.P99)/1e6)
		}
	}
	logger.Info("simulation started", "edges", len(o.edges), "population", o.population, "stores", len(pop.Stores), "seed", o.seed, "run_id", o.runID, "rate", o.rate)
	sum, runErr := simulate.Run(ctx, gen, cfg, logger)
	code := 0
	if runErr != nil {
		logger.Error("simulation failed", "err", runErr)
		code = 1
	}
	if truth != nil {
		if err := writeTruth(o.truth, truth); err != nil {
			logger.Error("writing ground truth failed", "err", err)
			code = 1
		}
	}
	if err := json.NewEncoder(stdout).Encode(sum); err != nil {
		return 1
	}
	return code
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
