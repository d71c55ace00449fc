// Command loadgen drives Unico edge agents with realistic omnichannel
// traffic for benchmarks: POS sales with baskets and loyalty cards, kiosk
// identifications by e-mail, web and app sessions that identify later,
// contact-center calls and in-store presence, from the seeded synthetic
// population of package simulate (the same engine as cmd/simulator). It
// sends as fast as possible or at a target rate, for a duration or an
// event count, and can write the ground truth (which identifiers belong to
// which person) for scoring the hub's identity resolution.
//
// Progress goes to stderr; one JSON summary line goes to stdout at the end:
// the run's figures plus the CPU seconds loadgen itself used. The exit
// status is 1 if an edge answered 400 or the run failed, 2 for bad flags.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/internal/trafficcli"
)

// program is loadgen's defaults: as fast as possible, for a minute, in
// large batches.
var program = trafficcli.Program{
	Name: "loadgen",
	Usage: "Drives Unico edge agents with synthetic omnichannel Segment traffic\n" +
		"(POST /v1/batch), as fast as possible or at --rate, retrying 429/503 after\n" +
		"Retry-After. Progress on stderr, a JSON summary on stdout.",
	Rate: 0, Duration: time.Minute, Batch: 100, Concurrency: 16,
	RequireEnd: true, RunIDPrefix: "l",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return trafficcli.Run(ctx, program, args, stdout, stderr)
}
