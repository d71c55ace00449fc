// Command benchrun is Unico's end-to-end benchmark, run by `make bench`
// once the binaries are built. It starts the hub (embedded broker) and two
// edge agents as separate processes on loopback, drives them with loadgen
// and prints one JSON object per scenario on stdout, one per line, with a
// readable table on stderr:
//
//   - edge_ingest: events/s the edges accept durably with loadgen sending
//     as fast as it can, HTTP p50/p99, agent peak RSS;
//   - pipeline: a steady target rate for 30 s; events/s from HTTP accept to
//     hub commit and the end-to-end latency from the hub's histogram;
//   - drain: 1,000,000 events queued at the edges while the hub is stopped,
//     then the time to drain them into the restarted hub;
//   - identity: pairwise precision, recall and F1 of the hub's profiles
//     against loadgen's ground truth, with the causes of the errors;
//   - sensor_frames: presence visits sent by simulated in-store sensors as
//     binary frames over MQTT to the edges' device listeners: frames and
//     sightings PUBACKed per second, presence events produced per second,
//     PUBACK p50/p99 and agent peak RSS.
//
// BENCH_SCALE (default 1) scales event counts and durations. Every
// scenario starts a fresh topology, has a deadline, and fails unless the
// hub ends holding exactly the events the edges accepted; the exit status
// is then 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/unico-cdp/unico/internal/procs"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags and the environment set.
type config struct {
	binDir       string
	scale        float64
	scenarios    []string
	pipelineRate float64
	workDir      string
	keep         bool
}

var allScenarios = []string{"edge_ingest", "pipeline", "drain", "hub_intake", "identity", "sensor_frames"}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{}
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scaleDef := 1.0
	if s := getenv("BENCH_SCALE"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 || math.IsInf(v, 0) {
			return c, fmt.Errorf("BENCH_SCALE %q: want a number > 0", s)
		}
		scaleDef = v
	}
	rateDef := 5000.0
	if s := getenv("BENCH_PIPELINE_RATE"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			return c, fmt.Errorf("BENCH_PIPELINE_RATE %q: want a number > 0", s)
		}
		rateDef = v
	}
	var only string
	fs.StringVar(&c.binDir, "bin", "bin", "directory holding the built hub, edge-agent and loadgen")
	fs.Float64Var(&c.scale, "scale", scaleDef, "scale of event counts and durations (env BENCH_SCALE)")
	fs.Float64Var(&c.pipelineRate, "pipeline-rate", rateDef, "target events/s of the pipeline scenario (env BENCH_PIPELINE_RATE)")
	fs.StringVar(&only, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run")
	fs.StringVar(&c.workDir, "work-dir", "", "parent of the temporary data directories (default the system's)")
	fs.BoolVar(&c.keep, "keep", false, "keep the data directories and logs")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.scale <= 0 {
		return c, errors.New("-scale must be > 0")
	}
	for s := range strings.SplitSeq(only, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return c, fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(allScenarios, ", "))
		}
		c.scenarios = append(c.scenarios, s)
	}
	for _, b := range []string{"hub", "edge-agent", "loadgen"} {
		if _, err := os.Stat(filepath.Join(c.binDir, b)); err != nil {
			return c, fmt.Errorf("binary %s: %w (run `make build` first)", b, err)
		}
	}
	return c, nil
}

// report is one scenario's JSON line.
type report struct {
	Scenario string         `json:"scenario"`
	OK       bool           `json:"ok"`
	Error    string         `json:"error,omitempty"`
	Commit   string         `json:"commit"`
	Go       string         `json:"go"`
	CPUs     int            `json:"cpus"`
	LoadAvg  float64        `json:"load_avg_1m"`
	Scale    float64        `json:"scale"`
	Seconds  float64        `json:"seconds"`
	Params   map[string]any `json:"params"`
	Results  map[string]any `json:"results"`
}

type bench struct {
	cfg    config
	logger *slog.Logger
	dir    string
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "benchrun:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dir, cleanup, err := procs.WorkDir(cfg.workDir, "unico-bench-", cfg.keep, logger)
	if err != nil {
		fmt.Fprintln(stderr, "benchrun:", err)
		return 1
	}
	defer cleanup()
	b := &bench{cfg: cfg, logger: logger, dir: dir}
	commit := gitCommit()
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	var reports []report
	code := 0
	for _, name := range cfg.scenarios {
		if ctx.Err() != nil {
			code = 1
			break
		}
		rep := report{Scenario: name, Commit: commit, Go: runtime.Version(), CPUs: runtime.NumCPU(),
			LoadAvg: loadAvg(), Scale: cfg.scale, Params: map[string]any{}, Results: map[string]any{}}
		logger.Info("scenario started", "scenario", name, "scale", cfg.scale)
		t0 := time.Now()
		err := b.scenario(ctx, name, &rep)
		rep.Seconds = round3(time.Since(t0).Seconds())
		rep.OK = err == nil
		if err != nil {
			rep.Error = err.Error()
			code = 1
			logger.Error("scenario failed", "scenario", name, "err", err)
		} else {
			logger.Info("scenario done", "scenario", name, "seconds", rep.Seconds)
		}
		if err := enc.Encode(rep); err != nil {
			return 1
		}
		reports = append(reports, rep)
	}
	printTable(stderr, reports)
	return code
}

func (b *bench) scenario(ctx context.Context, name string, rep *report) error {
	dir := filepath.Join(b.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var opts topoOptions
	if name == "sensor_frames" {
		var err error
		if opts, err = b.sensorTopology(dir); err != nil {
			return err
		}
	}
	topo, err := startTopology(ctx, b.cfg.binDir, dir, b.logger.With("scenario", name), opts)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer topo.close()
	switch name {
	case "edge_ingest":
		err = b.edgeIngest(ctx, topo, rep)
	case "pipeline":
		err = b.pipeline(ctx, topo, rep)
	case "drain":
		err = b.drain(ctx, topo, rep)
	case "hub_intake":
		err = b.hubIntake(ctx, topo, rep)
	case "identity":
		err = b.identity(ctx, topo, rep)
	case "sensor_frames":
		err = b.sensorFrames(ctx, topo, rep)
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, topo.logTails())
	}
	return nil
}

// scaledDuration is d × scale, at least floor.
func (b *bench) scaledDuration(d, floor time.Duration) time.Duration {
	return max(time.Duration(float64(d)*b.cfg.scale), floor)
}

// scaledCount is n × scale, at least floor.
func (b *bench) scaledCount(n, floor int64) int64 {
	return max(int64(float64(n)*b.cfg.scale), floor)
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// printTable writes every scenario's parameters and results as aligned
// rows.
func printTable(w io.Writer, reports []report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nscenario\tok\tfigure\tvalue")
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%v\tseconds\t%v\n", r.Scenario, r.OK, r.Seconds)
		for _, group := range []map[string]any{r.Params, r.Results} {
			for _, k := range slices.Sorted(maps.Keys(group)) {
				v, _ := json.Marshal(group[k])
				fmt.Fprintf(tw, "\t\t%s\t%s\n", k, v)
			}
		}
	}
	tw.Flush()
}
