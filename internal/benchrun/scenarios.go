package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/simulate"
)

// Scenario sizes at BENCH_SCALE=1.
const (
	ingestDuration   = 10 * time.Second
	pipelineDuration = 30 * time.Second
	drainEvents      = 1_000_000
	identityEvents   = 200_000
	population       = 10_000
	batchSize        = 100
	concurrency      = 16
)

// cpuSnapshot holds the CPU seconds of each process of a topology.
type cpuSnapshot map[string]float64

func (t *topology) cpu() cpuSnapshot {
	s := cpuSnapshot{}
	for _, p := range t.procs() {
		s[p.Name] = p.CPUSeconds()
	}
	return s
}

// cpuFigures adds the CPU seconds each process used since before, loadgen's
// too, and the microseconds of CPU per event of the Unico processes.
// lg is nil when loadgen did not run in the measured interval.
func cpuFigures(res map[string]any, t *topology, before cpuSnapshot, lg *loadResult, events int64) {
	now := t.cpu()
	per := map[string]float64{}
	if lg != nil {
		per["loadgen"] = round3(lg.CPUSeconds)
	}
	var unico float64
	for name, c := range now {
		d := c - before[name]
		per[name] = round3(d)
		unico += d
	}
	res["cpu_s"] = per
	if events > 0 {
		res["unico_cpu_us_per_event"] = round3(unico / float64(events) * 1e6)
		if lg != nil {
			res["loadgen_cpu_us_per_event"] = round3(lg.CPUSeconds / float64(events) * 1e6)
		}
	}
}

func rssFigures(t *topology) map[string]float64 {
	out := map[string]float64{}
	for _, p := range t.procs() {
		out[p.Name] = round3(p.PeakRSSMiB())
	}
	return out
}

func loadgenArgs(rate float64, extra ...string) []string {
	return append([]string{"--rate", strconv.FormatFloat(rate, 'f', -1, 64),
		"--batch", strconv.Itoa(batchSize), "--concurrency", strconv.Itoa(concurrency),
		"--population", strconv.Itoa(population)}, extra...)
}

// deliverTimeout bounds the wait for the hub to hold events accepted
// events, assuming at least 1,000 events/s end to end.
func deliverTimeout(events int64) time.Duration {
	return 2*time.Minute + time.Duration(events/1000)*time.Second
}

func (b *bench) edgeIngest(ctx context.Context, t *topology, rep *report) error {
	d := b.scaledDuration(ingestDuration, time.Second)
	rep.Params["duration_s"] = d.Seconds()
	rep.Params["rate"] = "max"
	rep.Params["batch"], rep.Params["concurrency"], rep.Params["population"] = batchSize, concurrency, population
	rep.Params["edges"] = len(t.edges)
	rep.Params["hub_running"] = true
	before := t.cpu()
	lg, err := t.runLoadgen(ctx, b.cfg.binDir, d+2*time.Minute, "loadgen-edge-ingest",
		loadgenArgs(0, "--duration", d.String(), "--seed", "11")...)
	if err != nil {
		return err
	}
	res := rep.Results
	res["accepted"] = lg.Accepted
	res["events_per_s"] = round3(lg.Rate)
	res["http_p50_ms"], res["http_p99_ms"] = lg.P50, lg.P99
	res["retries"] = lg.Retries
	cpuFigures(res, t, before, &lg, lg.Accepted)
	edgeCPU := 0.0
	for _, e := range t.edges {
		edgeCPU += e.CPUSeconds() - before[e.Name]
	}
	res["edge_cpu_us_per_event"] = round3(edgeCPU / float64(max(lg.Accepted, 1)) * 1e6)
	rss := 0.0
	for _, e := range t.edges {
		rss = max(rss, e.PeakRSSMiB())
	}
	res["edge_peak_rss_mib"] = round3(rss)
	// Nothing accepted may be lost: the hub must end with all of it.
	t0 := time.Now()
	if err := t.waitDelivered(ctx, lg.Accepted, deliverTimeout(lg.Accepted)); err != nil {
		return err
	}
	res["hub_caught_up_after_s"] = round3(time.Since(t0).Seconds())
	res["peak_rss_mib"] = rssFigures(t)
	return nil
}

func (b *bench) pipeline(ctx context.Context, t *topology, rep *report) error {
	d := b.scaledDuration(pipelineDuration, time.Second)
	rate := b.cfg.pipelineRate
	rep.Params["duration_s"] = d.Seconds()
	rep.Params["target_rate"] = rate
	rep.Params["batch"], rep.Params["concurrency"], rep.Params["population"] = batchSize, concurrency, population
	hist0, err := t.latencyHistogram(ctx)
	if err != nil {
		return err
	}
	before := t.cpu()
	lg, err := t.runLoadgen(ctx, b.cfg.binDir, d+2*time.Minute, "loadgen-pipeline",
		loadgenArgs(rate, "--duration", d.String(), "--seed", "12")...)
	if err != nil {
		return err
	}
	sent := time.Now()
	if err := t.waitDelivered(ctx, lg.Accepted, deliverTimeout(lg.Accepted)); err != nil {
		return err
	}
	catchUp := time.Since(sent).Seconds()
	hist1, err := t.latencyHistogram(ctx)
	if err != nil {
		return err
	}
	h := hist1.sub(hist0)
	res := rep.Results
	res["accepted"] = lg.Accepted
	res["send_rate"] = round3(lg.Rate)
	// From the first request to the last event committed at the hub.
	res["events_per_s"] = round3(float64(lg.Accepted) / (lg.Elapsed + catchUp))
	res["sustained"] = lg.Rate >= 0.95*rate && catchUp < 5
	res["hub_catch_up_s"] = round3(catchUp)
	res["http_p50_ms"], res["http_p99_ms"] = lg.P50, lg.P99
	res["e2e_p50_ms"] = round3(h.quantile(0.50) * 1000)
	res["e2e_p99_ms"] = round3(h.quantile(0.99) * 1000)
	res["e2e_observations"] = int64(h.total())
	if h.total() == 0 {
		return fmt.Errorf("the hub's %s histogram saw no events", latencyMetric)
	}
	cpuFigures(res, t, before, &lg, lg.Accepted)
	res["peak_rss_mib"] = rssFigures(t)
	return nil
}

func (b *bench) drain(ctx context.Context, t *topology, rep *report) error {
	n := b.scaledCount(drainEvents, 1000)
	rep.Params["events"] = n
	rep.Params["batch"], rep.Params["concurrency"], rep.Params["population"] = batchSize, concurrency, population
	if err := t.hub.Stop(syscall.SIGTERM, stopTimeout); err != nil {
		return err
	}
	lg, err := t.runLoadgen(ctx, b.cfg.binDir, 2*time.Minute+time.Duration(n/500)*time.Second, "loadgen-drain",
		loadgenArgs(0, "--events", strconv.FormatInt(n, 10), "--duration", "0", "--seed", "13")...)
	if err != nil {
		return err
	}
	res := rep.Results
	res["accepted"] = lg.Accepted
	res["queue_rate"] = round3(lg.Rate)
	depth, err := t.queueDepth(ctx)
	if err != nil {
		return err
	}
	res["queued"] = depth
	if depth != lg.Accepted {
		return fmt.Errorf("the edges queue %d events, loadgen had %d accepted", depth, lg.Accepted)
	}
	var qBytes int64
	for i := range t.edges {
		s, err := t.edgeStatus(ctx, i)
		if err != nil {
			return err
		}
		qBytes += s.QueueBytes
	}
	res["queued_mib"] = round3(float64(qBytes) / (1 << 20))
	before := t.cpu()
	t0 := time.Now()
	if err := t.startHub(ctx); err != nil {
		return err
	}
	if err := t.waitDelivered(ctx, lg.Accepted, deliverTimeout(lg.Accepted)); err != nil {
		return err
	}
	took := time.Since(t0).Seconds()
	res["drain_s"] = round3(took)
	res["events_per_s"] = round3(float64(lg.Accepted) / took)
	cpuFigures(res, t, before, nil, lg.Accepted)
	rss := rssFigures(t)
	rss["loadgen"] = round3(lg.PeakRSSMiB)
	res["peak_rss_mib"] = rss
	return nil
}

func (b *bench) identity(ctx context.Context, t *topology, rep *report) error {
	n := b.scaledCount(identityEvents, 1000)
	rep.Params["events"] = n
	rep.Params["population"] = population
	rep.Params["seed"] = 1
	rep.Params["mix"] = "default"
	truthPath := filepath.Join(t.dir, "truth.jsonl")
	const runID = "bench-identity"
	before := t.cpu()
	lg, err := t.runLoadgen(ctx, b.cfg.binDir, 2*time.Minute+time.Duration(n/500)*time.Second, "loadgen-identity",
		loadgenArgs(0, "--events", strconv.FormatInt(n, 10), "--duration", "0", "--seed", "1", "--run-id", runID, "--truth", truthPath)...)
	if err != nil {
		return err
	}
	if err := t.waitDelivered(ctx, lg.Accepted, deliverTimeout(lg.Accepted)); err != nil {
		return err
	}
	res := rep.Results
	res["accepted"] = lg.Accepted
	cpuFigures(res, t, before, &lg, lg.Accepted)
	f, err := os.Open(truthPath)
	if err != nil {
		return fmt.Errorf("truth: %w", err)
	}
	truth, err := simulate.ReadTruth(f)
	f.Close()
	if err != nil {
		return err
	}
	profiles, err := t.profiles(ctx)
	if err != nil {
		return err
	}
	sc := scoreIdentity(truth, profiles)
	res["precision"], res["recall"], res["f1"] = round4(sc.Precision), round4(sc.Recall), round4(sc.F1)
	res["true_pairs"], res["hub_pairs"], res["correct_pairs"] = sc.TruePairs, sc.HubPairs, sc.CorrectPairs
	res["persons"], res["profiles"] = sc.Persons, sc.Profiles
	res["identifiers"], res["identifiers_missing"], res["identifiers_ambiguous"] = sc.Identifiers, sc.IdentifiersMissing, sc.IdentifiersAmbiguous
	res["over_merged_profiles"], res["under_merged_persons"] = sc.OverMergedProfiles, sc.UnderMergedPersons
	res["fused_person_pairs_by_cause"] = sc.FusedPairsByCause
	res["split_fragments_by_cause"] = sc.SplitFragmentsByCause
	// The same score over the identifiers a customer gives (account,
	// e-mail, phone, card), leaving out the anonymous and device ids of
	// sessions, many of which never identify.
	known := scoreIdentity(withoutTypes(truth, "anonymous_id", "device_id"), profiles)
	res["known_identifiers"] = map[string]any{
		"precision": round4(known.Precision), "recall": round4(known.Recall), "f1": round4(known.F1),
		"identifiers": known.Identifiers, "under_merged_persons": known.UnderMergedPersons,
	}
	// Recall against what the events make linkable separates the hub's
	// misses from links the data never offered.
	if ev, err := replayEvidence(1, population, n, runID); err != nil {
		return err
	} else if !sameIdentifiers(ev.records, truth) {
		res["evidence"] = "replayed events differ from loadgen's truth; not scored"
	} else {
		linkable, found := evidenceRecall(truth, profiles, ev.component)
		res["linkable_pairs"] = linkable
		res["recall_of_linkable_pairs"] = round4(float64(found) / float64(max(linkable, 1)))
	}
	if s, err := t.hubStats(ctx); err == nil {
		res["hub_profiles_counter"] = s.Store.Profiles
	}
	return nil
}

func round4(f float64) float64 { return float64(int64(f*10000+0.5)) / 10000 }
