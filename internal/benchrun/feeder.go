package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/edge/uplink"
	"github.com/unico-cdp/unico/internal/procs"
	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

// The hub_intake scenario measures the hub on its own, as deployed: the
// edge agents run in the stores, not on the hub's machine. The scenario
// stops the topology's agents and feeds the hub from this process with
// the agents' own uplink code (edge/uplink.Forwarder: batches, window,
// acks) reading simulator events encoded beforehand from memory, and acks
// the hub's snapshot batches without applying them. The hub therefore
// does all of its work (broker, intake, resolution, durable commits, acks,
// snapshots) and has the machine's cores to itself, minus the feeder's
// share, which is reported.

// feedTenant is the tenant of the feeder's edges, the agents' default.
const feedTenant = "default"

// feedEvents encodes n simulator events (seed, population and country
// code of loadgen's runs) for each of edges in turn, 100 per batch, as the
// agents would map and queue them.
func feedEvents(n int64, edges []string) ([][]uplink.Record, error) {
	pop, err := simulate.NewPopulation(13, population, simulate.PopulationOptions{CountryCode: countryCode})
	if err != nil {
		return nil, err
	}
	gen, err := simulate.NewGenerator(pop, simulate.GeneratorConfig{Seed: 13, Now: time.Now, RunID: "bench-hub-intake"})
	if err != nil {
		return nil, err
	}
	mappers := make([]*protocol.Mapper, len(edges))
	for i, id := range edges {
		if mappers[i], err = protocol.NewMapper(protocol.MapOptions{DefaultChannel: "pos", DefaultCountryCode: countryCode,
			Source: protocol.Source{Tenant: feedTenant, Edge: id, Site: id}}); err != nil {
			return nil, err
		}
	}
	out := make([][]uplink.Record, len(edges))
	var (
		b     simulate.Batch
		evs   []protocol.Event
		total int64
	)
	for i := 0; total < n; i = (i + 1) % len(edges) {
		b.Reset()
		gen.Fill(&b, int(min(batchSize, n-total)))
		if evs, err = mappers[i].Decode(protocol.EndpointBatch, b.Body(), evs[:0]); err != nil {
			return nil, err
		}
		for k := range evs {
			data, err := protocol.MarshalEvent(&evs[k])
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], uplink.Record{Seq: uint64(len(out[i]) + 1), Data: data})
		}
		total += int64(len(evs))
	}
	return out, nil
}

// feedSource is an edge's queue held in memory: records with seqs 1…n.
// The benchmark checks the hub's event count instead, so Ack deletes
// nothing.
type feedSource struct {
	recs []uplink.Record
}

func (s *feedSource) Read(from uint64, maxEvents, maxBytes int) ([]uplink.Record, error) {
	i := int(min(max(from, 1)-1, uint64(len(s.recs))))
	j, size := i, 0
	for j < len(s.recs) && j-i < maxEvents {
		if j > i && size+len(s.recs[j].Data) > maxBytes {
			break
		}
		size += len(s.recs[j].Data)
		j++
	}
	return slices.Clone(s.recs[i:j]), nil
}

// Wait returns at once for a queued seq; past the last one nothing comes.
func (s *feedSource) Wait(ctx context.Context, seq uint64) error {
	if seq <= uint64(len(s.recs)) {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *feedSource) Ack(first, last uint64) error { return nil }

// feedEdge is one fed edge: its forwarder and its snapshot acker.
type feedEdge struct {
	id    string
	fwd   *uplink.Forwarder
	snaps chan []byte
	// resume asks for a resume ack after a (re)connect.
	resume  chan struct{}
	applied uint64
	log     *slog.Logger
}

func newFeedEdge(brokerURL, id string, recs []uplink.Record, logger *slog.Logger) (*feedEdge, error) {
	e := &feedEdge{id: id, snaps: make(chan []byte, 64), resume: make(chan struct{}, 1), log: logger.With("feed_edge", id)}
	cfg := uplink.Config{
		BrokerURL: brokerURL, Tenant: feedTenant, EdgeID: id, ClientID: "bench-feed-" + id,
		Subscriptions: map[string]func([]byte){
			protocol.SnapshotTopic(feedTenant, id): func(p []byte) {
				select {
				case e.snaps <- p:
				default: // unacked: the hub sends it again
				}
			},
		},
		OnConnect: func() {
			select {
			case e.resume <- struct{}{}:
			default:
			}
		},
	}
	fwd, err := uplink.New(cfg, logger.With("component", "feed-uplink", "edge", id), &feedSource{recs: recs})
	if err != nil {
		return nil, err
	}
	e.fwd = fwd
	return e, nil
}

// run forwards the edge's records and acks snapshot batches in seq order,
// as an agent does, until ctx is done.
func (e *feedEdge) run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.ackSnapshots(ctx)
	}()
	err := e.fwd.Run(ctx)
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (e *feedEdge) ackSnapshots(ctx context.Context) {
	for {
		status := protocol.AckOK
		select {
		case <-ctx.Done():
			return
		case <-e.resume:
			status = protocol.AckResume
		case p := <-e.snaps:
			var b protocol.SnapshotBatch
			if err := protocol.Unmarshal(p, &b, protocol.Limits{}); err != nil {
				e.log.Warn("snapshot batch undecodable", "err", err)
				continue
			}
			switch {
			case b.Seq == e.applied+1:
				e.applied = b.Seq
			case b.Seq > e.applied+1:
				continue // a gap: the hub resends from the last ack
			}
		}
		ack, err := protocol.Marshal(&protocol.Ack{EdgeID: e.id, FirstSeq: e.applied, LastSeq: e.applied, Status: status, AckedAt: time.Now().UTC()})
		if err == nil {
			err = e.fwd.Publish(protocol.SnapshotAckTopic(feedTenant, e.id), ack, 10*time.Second)
		}
		if err != nil && ctx.Err() == nil {
			e.log.Debug("snapshot ack not sent", "seq", e.applied, "err", err)
		}
	}
}

func (b *bench) hubIntake(ctx context.Context, t *topology, rep *report) error {
	n := b.scaledCount(drainEvents, 1000)
	edges := []string{"feed-a", "feed-b"}
	rep.Params["events"], rep.Params["population"], rep.Params["edges"] = n, population, len(edges)
	for _, e := range t.edges {
		if err := e.Stop(syscall.SIGTERM, stopTimeout); err != nil {
			return err
		}
	}
	// The hub alone from here on: CPU, RSS and liveness checks skip the
	// stopped agents.
	t.edges, t.edgeHTTP = nil, nil
	b.logger.Info("encoding events", "events", n)
	recs, err := feedEvents(n, edges)
	if err != nil {
		return fmt.Errorf("encode events: %w", err)
	}
	brokerURL := fmt.Sprintf("mqtt://127.0.0.1:%d", t.hubMQTT)
	feeds := make([]*feedEdge, len(edges))
	for i, id := range edges {
		if feeds[i], err = newFeedEdge(brokerURL, id, recs[i], b.logger); err != nil {
			return err
		}
	}
	recs = nil
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(feeds))
	var wg sync.WaitGroup
	before, feedCPU0, t0 := t.cpu(), procs.SelfCPUSeconds(), time.Now()
	for _, f := range feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.run(fctx); err != nil {
				errs <- fmt.Errorf("feed %s: %w", f.id, err)
			}
		}()
	}
	var feedErr error
	// When the hub's count passed each third of n: the rate per third
	// shows how the hub slows as its data grows.
	var thirds []time.Duration
	last, err := t.settle(ctx, "every fed event at the hub", deliverTimeout(n), 0, func(ctx context.Context) ([]int64, bool, error) {
		select {
		case feedErr = <-errs:
			return nil, true, nil
		default:
		}
		s, err := t.hubStats(ctx)
		if err != nil {
			return nil, false, err
		}
		for at := time.Since(t0); len(thirds) < 3 && s.Store.Events >= n*int64(len(thirds)+1)/3; {
			thirds = append(thirds, at)
		}
		return []int64{s.Store.Events}, s.Store.Events >= n, nil
	}, func(v []int64) {
		t.logger.Info("feeding the hub", "hub_events", v[0], "want", n)
	})
	took := time.Since(t0).Seconds()
	feedCPU := procs.SelfCPUSeconds() - feedCPU0
	cancel()
	wg.Wait()
	if feedErr != nil {
		return feedErr
	}
	if err != nil {
		return fmt.Errorf("%w: hub holds %d of %d events", err, last[0], n)
	}
	if last[0] != n {
		return fmt.Errorf("hub holds %d events, %d were fed", last[0], n)
	}
	res := rep.Results
	res["accepted"] = n
	res["seconds"] = round3(took)
	res["events_per_s"] = round3(float64(n) / took)
	// Left out when two thirds were passed between two polls (small
	// runs): a rate over no time says nothing.
	var prev time.Duration
	perThird := make([]float64, 0, len(thirds))
	for _, at := range thirds {
		if at <= prev {
			perThird = nil
			break
		}
		perThird = append(perThird, round3(float64(n)/3/(at-prev).Seconds()))
		prev = at
	}
	if len(perThird) == 3 {
		res["events_per_s_by_third"] = perThird
	}
	cpuFigures(res, t, before, nil, n)
	// The feeder's CPU is this process's.
	cpu := res["cpu_s"].(map[string]float64)
	cpu["feeder"] = round3(feedCPU)
	res["hub_cpu_us_per_event"] = round3(cpu["hub"] / float64(n) * 1e6)
	delete(res, "unico_cpu_us_per_event")
	res["peak_rss_mib"] = map[string]float64{"hub": round3(t.hub.PeakRSSMiB())}
	st, err := t.hubStats(ctx)
	if err != nil {
		return fmt.Errorf("hub stats: %w", err)
	}
	res["profiles"], res["repartitions"], res["refused_link_repeats"] = st.Store.Profiles, st.Store.Repartitions, st.Store.RefusedRepeats
	return nil
}
