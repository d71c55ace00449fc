// Command chaos is Unico's fault-injection suite, run by `make chaos` once
// the binaries are built. Each scenario starts a hub and two edge agents as
// separate processes on loopback, sends deterministic orders to the edges
// from clients that retry like Segment's SDKs (same message ids until
// 200), injects one kind of fault while the traffic runs, and then checks
// that every event an edge acknowledged is at the hub exactly once: the
// hub's event count equals the distinct acknowledged message ids, and
// every customer's computed orders and revenue equal the sums of that
// customer's acknowledged orders.
//
// sensor_sigkill sends sensor frames to the edges' device listeners
// instead and checks the hub's presence events against the frames the
// agents PUBACKed (see verifySensors in sensors.go).
//
// Scenarios: edge_sigkill, hub_sigkill, broker_restart_mosquitto,
// hub_unreachable, quota, slow_network, sensor_sigkill. It prints one JSON
// object per scenario on stdout and a readable line on stderr, and exits 1
// when any scenario lost or double-counted an event or could not run.
// CHAOS_SCALE (default 1) scales durations; 0.1 is the reduced form CI
// runs.
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
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags and the environment set.
type config struct {
	binDir    string
	scale     float64
	scenarios []string
	workDir   string
	keep      bool
	mosquitto string
}

var allScenarios = []string{"edge_sigkill", "hub_sigkill", "broker_restart_mosquitto", "hub_unreachable", "quota", "slow_network", "sensor_sigkill"}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{}
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scaleDef := 1.0
	if s := getenv("CHAOS_SCALE"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 || math.IsInf(v, 0) {
			return c, fmt.Errorf("CHAOS_SCALE %q: want a number > 0", s)
		}
		scaleDef = v
	}
	var only string
	fs.StringVar(&c.binDir, "bin", "bin", "directory holding the built hub and edge-agent")
	fs.Float64Var(&c.scale, "scale", scaleDef, "scale of the scenarios' durations (env CHAOS_SCALE)")
	fs.StringVar(&only, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run")
	fs.StringVar(&c.workDir, "work-dir", "", "parent of the temporary data directories (default the system's)")
	fs.BoolVar(&c.keep, "keep", false, "keep the data directories and logs")
	fs.StringVar(&c.mosquitto, "mosquitto", "mosquitto", "the mosquitto binary (looked up in PATH and /usr/sbin)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.scale <= 0 || math.IsInf(c.scale, 0) || math.IsNaN(c.scale) {
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
	for _, b := range []string{"hub", "edge-agent"} {
		if _, err := os.Stat(filepath.Join(c.binDir, b)); err != nil {
			return c, fmt.Errorf("binary %s: %w (run `make build` first)", b, err)
		}
	}
	return c, nil
}

// report is one scenario's JSON line.
type report struct {
	Scenario         string  `json:"scenario"`
	OK               bool    `json:"ok"`
	Skipped          string  `json:"skipped,omitempty"`
	Acknowledged     int     `json:"acknowledged"`
	AtHub            int64   `json:"at_hub"`
	CustomersChecked int     `json:"customers_checked"`
	Mismatches       int     `json:"mismatches"`
	FaultsInjected   int     `json:"faults_injected"`
	Seconds          float64 `json:"seconds"`
	Scale            float64 `json:"scale"`
	Requests         int64   `json:"requests"`
	Retries          int64   `json:"retries"`
	TransportErrors  int64   `json:"transport_errors"`
	Status429        int64   `json:"status_429"`
	Status5xx        int64   `json:"status_5xx"`
	GivenUp          int     `json:"given_up,omitempty"`
	FirstMismatch    string  `json:"first_mismatch,omitempty"`
	Error            string  `json:"error,omitempty"`
	// Sensors holds sensor_sigkill's figures.
	Sensors *sensorReport `json:"sensors,omitempty"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dir, cleanup, err := procs.WorkDir(cfg.workDir, "unico-chaos-", cfg.keep, logger)
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	defer cleanup()
	s := &suite{cfg: cfg, logger: logger, dir: dir}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	code := 0
	passed, failed, skipped := 0, 0, 0
	for _, name := range cfg.scenarios {
		if ctx.Err() != nil {
			code = 1
			break
		}
		logger.Info("scenario started", "scenario", name, "scale", cfg.scale)
		rep := s.run(ctx, name)
		switch {
		case rep.Skipped != "":
			skipped++
		case rep.OK:
			passed++
		default:
			failed++
			code = 1
		}
		if err := enc.Encode(rep); err != nil {
			return 1
		}
		fmt.Fprintln(stderr, readable(rep))
	}
	// The closing line, in the form test runners use.
	fmt.Fprintf(stderr, "chaos: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	return code
}

// readable is a report as one line for people.
func readable(r report) string {
	if r.Skipped != "" {
		return fmt.Sprintf("chaos: %-26s SKIP  %s", r.Scenario, r.Skipped)
	}
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	if s := r.Sensors; s != nil {
		line := fmt.Sprintf("chaos: %-26s %s  %d frames PUBACKed (%d resent), %d identifiers: %d/%d enters by id, %d by another frame, %d optional absent, %d missing; %d dwells checked, %d by another frame, %d uncertain, %d missing; %d duplicates, %d over bound, %d unclosed; %d faults, %.1fs",
			r.Scenario, verdict, s.FramesAcked, s.Resends, s.Identifiers, s.EntersExact, s.EntersExpected, s.EntersOtherFrame, s.EntersOptionalAbsent, s.EntersMissing,
			s.DwellsChecked, s.DwellsOtherFrame, s.DwellsUncertain, s.DwellsMissing, s.Duplicates, s.OverBound, s.Unclosed, r.FaultsInjected, r.Seconds)
		if r.FirstMismatch != "" {
			line += "\n  first mismatch: " + r.FirstMismatch
		}
		if r.Error != "" {
			line += "\n  error: " + r.Error
		}
		return line
	}
	line := fmt.Sprintf("chaos: %-26s %s  %d acknowledged, %d at hub, %d/%d customers mismatched, %d faults, %d retries (%d transport errors, %d×429, %d×5xx), %.1fs",
		r.Scenario, verdict, r.Acknowledged, r.AtHub, r.Mismatches, r.CustomersChecked, r.FaultsInjected,
		r.Retries, r.TransportErrors, r.Status429, r.Status5xx, r.Seconds)
	if r.FirstMismatch != "" {
		line += "\n  first mismatch: " + r.FirstMismatch
	}
	if r.Error != "" {
		line += "\n  error: " + r.Error
	}
	return line
}
