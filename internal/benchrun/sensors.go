package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/unico-cdp/unico/simulate"
)

// Sizes of the sensor_frames scenario at BENCH_SCALE=1: 50 stores of six
// scanners each (150 per edge), every scanner reporting every 100 ms, and
// 120 new visits a second whose zone stays last a few seconds.
const (
	sensorDuration    = 20 * time.Second
	sensorStores      = 50
	sensorVisitRate   = 120
	sensorInterval    = 100 * time.Millisecond
	sensorMinDwell    = 2 * time.Second
	sensorExitTimeout = 8 * time.Second
)

// sensorTopology writes the sensors' credentials and returns the options
// that give every edge a device listener.
func (b *bench) sensorTopology(dir string) (topoOptions, error) {
	path := filepath.Join(dir, "devices.txt")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return topoOptions{}, fmt.Errorf("device credentials: %w", err)
	}
	if err := simulate.WriteCredentials(f, sensorStores); err != nil {
		f.Close()
		return topoOptions{}, err
	}
	if err := f.Close(); err != nil {
		return topoOptions{}, fmt.Errorf("device credentials: %w", err)
	}
	return topoOptions{presence: &presenceOptions{credentials: path, minDwell: sensorMinDwell, exitTimeout: sensorExitTimeout}}, nil
}

// sensorFrames sends presence visits as sensor frames (and the app
// beacons' identifies over HTTP). Once the sensors stopped and the agents
// closed every presence session, the hub must hold exactly the accepted
// identifies plus its presence events, and those must be what the
// PUBACKed frames imply, per identifier (simulate.CheckPresence): every
// presence.enter by id, every zone-change presence.zone_dwell after a
// stay well over the minimum by id, one presence.exit per enter, no id
// twice. loadgen's own count of the presence events (its mirror of the
// agents' bridges) is a figure, not a check: the agents stamp sightings
// with their receive times and the mirror with the PUBACKs', so a stay
// close to the minimum dwell (a visit cut short by the end of the run)
// may yield a presence.zone_dwell on one side only.
func (b *bench) sensorFrames(ctx context.Context, t *topology, rep *report) error {
	d := b.scaledDuration(sensorDuration, 3*time.Second)
	p := rep.Params
	p["duration_s"] = d.Seconds()
	p["visit_rate"] = sensorVisitRate
	p["stores"], p["sensors"] = sensorStores, sensorStores*simulate.NumZones
	p["edges"] = len(t.edges)
	p["frame_interval_ms"] = sensorInterval.Milliseconds()
	p["presence_min_dwell_s"], p["presence_exit_timeout_s"] = sensorMinDwell.Seconds(), sensorExitTimeout.Seconds()
	p["population"] = population
	before := t.cpu()
	opts := t.presence
	framesLog := filepath.Join(t.dir, "frames-acked.jsonl")
	lg, err := t.runLoadgen(ctx, b.cfg.binDir, d+2*time.Minute, "loadgen-sensor-frames",
		"--rate", strconv.Itoa(sensorVisitRate), "--duration", d.String(), "--mix", "presence=1",
		"--population", strconv.Itoa(population), "--stores", strconv.Itoa(sensorStores), "--seed", "14",
		"--batch", strconv.Itoa(batchSize), "--concurrency", "4",
		"--device-mqtt", strings.Join(t.deviceMQTT, ","), "--device-credentials", opts.credentials,
		"--frame-interval", sensorInterval.String(), "--presence-min-dwell", opts.minDwell.String(),
		"--presence-exit-timeout", opts.exitTimeout.String(), "--frames-log", framesLog)
	if err != nil {
		return err
	}
	fs := lg.Frames
	if fs == nil {
		return fmt.Errorf("loadgen printed no frame figures")
	}
	res := rep.Results
	res["accepted"] = lg.Accepted
	res["visits"], res["visits_skipped"] = fs.Visits, fs.VisitsSkipped
	res["frames_acked"], res["sightings_acked"] = fs.FramesAcked, fs.SightingsAcked
	res["frames_acked_per_s"], res["sightings_acked_per_s"] = fs.FramesPerSecond, fs.SightingsPerSec
	res["puback_p50_ms"], res["puback_p99_ms"] = fs.PubackP50, fs.PubackP99
	res["sightings_dropped"], res["resends"] = fs.SightingsDropped, fs.Resends
	res["presence_events"] = fs.ExpectedEvents
	res["presence_events_per_s"] = round3(float64(fs.ExpectedTotal) / lg.Elapsed)
	cpuFigures(res, t, before, &lg, fs.SightingsAcked)
	rss := 0.0
	for _, e := range t.edges {
		rss = max(rss, e.PeakRSSMiB())
	}
	res["edge_peak_rss_mib"] = round3(rss)
	if !fs.Exact || fs.FramesUnacked > 0 {
		return fmt.Errorf("frames not all acknowledged or an agent may have restarted: %+v", *fs)
	}
	if fs.FramesAcked == 0 || fs.ExpectedTotal == 0 {
		return fmt.Errorf("no frame was acknowledged or no presence event is expected: %+v", *fs)
	}
	x, err := t.presenceExpectation(framesLog, opts)
	if err != nil {
		return err
	}
	if x.Frames() != int(fs.FramesAcked) {
		return fmt.Errorf("loadgen logged %d PUBACKed frames, its summary says %d", x.Frames(), fs.FramesAcked)
	}
	// The sensors are silent now: the agents close the last sessions by
	// the wall clock, the exit timeout plus as much again after their
	// last sightings.
	if err := t.waitSessionsClosed(ctx, lg.Accepted+fs.ExpectedTotal); err != nil {
		return err
	}
	pr, err := t.checkPresence(ctx, x, lg.Accepted)
	res["presence_check"] = pr
	if err != nil {
		return err
	}
	res["peak_rss_mib"] = rssFigures(t)
	return nil
}
