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
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/unico-cdp/unico/internal/trafficcli"
	"github.com/unico-cdp/unico/simulate"
)

// program is the simulator's defaults: a steady, gentle store.
var program = trafficcli.Program{
	Name: "simulator",
	Usage: "Sends synthetic Segment traffic to Unico edge agents (POST /v1/batch),\n" +
		"retrying 429/503 after Retry-After. Prints progress to stderr and a JSON\n" +
		"summary to stdout. Exit status 1 if an edge answered 400 or the run failed.",
	Rate: 100, Batch: simulate.DefaultBatch, Concurrency: simulate.DefaultConcurrency, RunIDPrefix: "s",
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

func parseFlags(args []string, stderr io.Writer) (*trafficcli.Options, error) {
	return trafficcli.ParseFlags(program, args, stderr)
}
