package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of RunConfig.
const (
	DefaultBatch         = 20
	DefaultConcurrency   = 4
	DefaultProgress      = 5 * time.Second
	DefaultFlushInterval = time.Second
	DefaultDrainTimeout  = 10 * time.Second
)

// RunConfig configures Run. Zero fields take the documented defaults.
type RunConfig struct {
	// Edges are the base URLs of the edge agents. Store i's events go to
	// Edges[i % len(Edges)]. Required.
	Edges []string
	// Sender posts the batches. Required.
	Sender *Sender
	// Rate is the target in events per second; 0 means as fast as possible.
	Rate float64
	// Duration and Events stop generation after a time or a number of
	// events, whichever comes first; 0 means no limit.
	Duration time.Duration
	Events   int64
	// Batch is the number of messages per request (default DefaultBatch).
	Batch int
	// Concurrency is the number of requests in flight (default
	// DefaultConcurrency).
	Concurrency int
	// FlushInterval sends a partly filled batch once its first message is
	// this old (default DefaultFlushInterval), so slow rates still flow.
	FlushInterval time.Duration
	// DrainTimeout bounds how long batches already handed to the sender may
	// still take once generation stops because ctx ended (default
	// DefaultDrainTimeout).
	DrainTimeout time.Duration
	// Truth, when set, records every accepted event.
	Truth *Truth
	// Frames, when set, sends presence visits as sensor frames over MQTT
	// to the edges' device listeners; the generator must have been made
	// with GeneratorConfig.PresenceFrames. A visit counts as one event
	// towards Rate and Events.
	Frames *FrameConfig
	// Progress is the interval of OnProgress calls (default
	// DefaultProgress).
	Progress time.Duration
	// OnProgress, when set, is called every Progress with the figures of
	// the run so far and of the last interval.
	OnProgress func(Progress)
}

// Progress reports a run's figures.
type Progress struct {
	Elapsed time.Duration
	// Sent counts events in batches handed to the sender; Accepted those
	// in batches answered 200; Rejected those in batches that failed for
	// good; Retries the repeated requests.
	Sent, Accepted, Rejected, Retries int64
	// Rate is the accepted events per second over the last interval.
	Rate float64
	// P50 and P99 are request latencies over the last interval.
	P50, P99 time.Duration
	// With frames: FramesAcked and SightingsAcked so far, FrameRate the
	// frames PUBACKed per second over the last interval, Visits started.
	FramesAcked, SightingsAcked, Visits int64
	FrameRate                           float64
}

// Summary is the outcome of a run, printed as JSON by the simulator.
type Summary struct {
	Sent        int64   `json:"sent"`
	Accepted    int64   `json:"accepted"`
	Rejected    int64   `json:"rejected"`
	Retries     int64   `json:"retries"`
	Batches     int64   `json:"batches"`
	BadRequests int64   `json:"bad_requests"`
	Elapsed     float64 `json:"elapsed_s"`
	Rate        float64 `json:"events_per_s"`
	P50         float64 `json:"p50_ms"`
	P99         float64 `json:"p99_ms"`
	Edges       int     `json:"edges"`
	// Frames is set when presence went as sensor frames.
	Frames *FrameSummary `json:"frames,omitempty"`
}

type runStats struct {
	sent, accepted, rejected, retries, batches, badRequests atomic.Int64
	lat                                                     latencyHist
}

// Run generates events with gen and sends them to the edges until a limit
// is reached or ctx ends. It returns an error wrapping ErrBadRequest as soon
// as an edge answers 400, and stops then. Batches already handed to the
// sender are finished (within DrainTimeout) before Run returns.
func Run(ctx context.Context, gen *Generator, cfg RunConfig, logger *slog.Logger) (Summary, error) {
	if len(cfg.Edges) == 0 || cfg.Sender == nil {
		return Summary{}, fmt.Errorf("run: need edges and a sender: %w", ErrInvalidConfig)
	}
	if cfg.Rate < 0 || cfg.Duration < 0 || cfg.Events < 0 || cfg.Batch < 0 || cfg.Concurrency < 0 {
		return Summary{}, fmt.Errorf("run: negative rate or limit: %w", ErrInvalidConfig)
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.Progress <= 0 {
		cfg.Progress = DefaultProgress
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "run")
	if cfg.Frames != nil && !gen.cfg.PresenceFrames {
		return Summary{}, fmt.Errorf("run: frames need a generator with PresenceFrames: %w", ErrInvalidConfig)
	}
	var fl *fleet
	if cfg.Frames != nil {
		fc := *cfg.Frames
		if err := fc.setDefaults(len(cfg.Edges)); err != nil {
			return Summary{}, err
		}
		var err error
		if fl, err = newFleet(ctx, gen.pop, fc, cfg.Truth, logger); err != nil {
			return Summary{}, err
		}
		if err := fl.connect(); err != nil {
			fl.stop(0)
			return Summary{}, fmt.Errorf("run: %w", err)
		}
		logger.Info("sensors connected", "sensors", len(fl.sensors()), "edges", len(fc.Brokers))
		fl.run()
	}

	// sendCtx outlives ctx by DrainTimeout so that batches in flight finish;
	// a 400 cancels everything at once.
	sendCtx, cancelSend := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelSend(nil)
	var drainMu sync.Mutex
	var drainTimer *time.Timer
	stopDrain := context.AfterFunc(ctx, func() {
		drainMu.Lock()
		drainTimer = time.AfterFunc(cfg.DrainTimeout, func() { cancelSend(context.DeadlineExceeded) })
		drainMu.Unlock()
	})
	defer func() {
		stopDrain()
		drainMu.Lock()
		if drainTimer != nil {
			drainTimer.Stop()
		}
		drainMu.Unlock()
	}()
	genCtx, cancelGen := context.WithCancel(ctx)
	defer cancelGen()
	// runCtx ends when ctx does or a 400 stops the run; genCtx also when
	// Duration has passed, after which what was generated is still sent.
	runCtx := genCtx
	if cfg.Duration > 0 {
		var c context.CancelFunc
		genCtx, c = context.WithTimeout(genCtx, cfg.Duration)
		defer c()
	}
	go func() {
		<-sendCtx.Done()
		cancelGen()
	}()

	var st runStats
	start := time.Now()
	queue := make(chan *Batch, cfg.Concurrency)
	pool := sync.Pool{New: func() any { return new(Batch) }}
	var firstErr error
	var errOnce sync.Once

	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for b := range queue {
				n := int64(b.Len())
				st.sent.Add(n)
				st.batches.Add(1)
				res, err := cfg.Sender.Send(sendCtx, cfg.Edges[b.Edge], b.Body())
				if res.Attempts > 1 {
					st.retries.Add(int64(res.Attempts - 1))
				}
				if res.Status != 0 {
					st.lat.observe(res.Latency)
				}
				if err == nil {
					st.accepted.Add(n)
					if cfg.Truth != nil {
						cfg.Truth.Record(b.Metas)
					}
				} else {
					st.rejected.Add(n)
					if errors.Is(err, ErrBadRequest) {
						st.badRequests.Add(1)
						errOnce.Do(func() { firstErr = err })
						cancelSend(err)
					}
					logger.Warn("batch not accepted", "events", n, "err", err)
				}
				b.Reset()
				pool.Put(b)
			}
		})
	}

	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if cfg.OnProgress != nil {
		progressWG.Go(func() {
			t := time.NewTicker(cfg.Progress)
			defer t.Stop()
			var prevAcc, prevFrames int64
			prevLat := st.lat.snapshot()
			prevT := start
			for {
				select {
				case <-progressDone:
					return
				case now := <-t.C:
					acc := st.accepted.Load()
					lat := st.lat.snapshot()
					iv := lat.sub(prevLat)
					p := Progress{
						Elapsed: now.Sub(start), Sent: st.sent.Load(), Accepted: acc,
						Rejected: st.rejected.Load(), Retries: st.retries.Load(),
						Rate: float64(acc-prevAcc) / now.Sub(prevT).Seconds(),
						P50:  iv.quantile(0.5), P99: iv.quantile(0.99),
					}
					if fl != nil {
						p.FramesAcked, p.SightingsAcked = fl.st.acked.Load(), fl.st.sightingsAcked.Load()
						p.Visits = fl.st.visits.Load()
						p.FrameRate = float64(p.FramesAcked-prevFrames) / now.Sub(prevT).Seconds()
						prevFrames = p.FramesAcked
					}
					cfg.OnProgress(p)
					prevAcc, prevLat, prevT = acc, lat, now
				}
			}
		})
	}

	produce(genCtx, runCtx, gen, cfg, queue, &pool, start, fl)
	genElapsed := time.Since(start)
	if fl != nil {
		fl.stop(cfg.DrainTimeout)
	}
	close(queue)
	wg.Wait()
	close(progressDone)
	progressWG.Wait()

	elapsed := time.Since(start)
	lat := st.lat.snapshot()
	sum := Summary{
		Sent: st.sent.Load(), Accepted: st.accepted.Load(), Rejected: st.rejected.Load(),
		Retries: st.retries.Load(), Batches: st.batches.Load(), BadRequests: st.badRequests.Load(),
		Elapsed: round3(elapsed.Seconds()), Rate: round3(float64(st.accepted.Load()) / elapsed.Seconds()),
		P50: round3(float64(lat.quantile(0.5)) / 1e6), P99: round3(float64(lat.quantile(0.99)) / 1e6),
		Edges: len(cfg.Edges),
	}
	if fl != nil {
		sum.Frames = fl.summary(genElapsed)
	}
	if firstErr != nil {
		return sum, fmt.Errorf("run: %w", firstErr)
	}
	return sum, nil
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// produce generates messages into one batch per edge and queues full or
// stale batches until a limit is reached or ctx ends; then it queues what
// is left unless runCtx ended. Visits go to fl.
func produce(ctx, runCtx context.Context, gen *Generator, cfg RunConfig, queue chan<- *Batch, pool *sync.Pool, start time.Time, fl *fleet) {
	open := make([]*Batch, len(cfg.Edges))
	opened := make([]time.Time, len(cfg.Edges))
	var scratch []byte
	var meta Meta
	// dispatch queues edge e's batch; false when ctx ended first (the
	// batch stays open for the final flush).
	dispatch := func(e int) bool {
		select {
		case queue <- open[e]:
			open[e] = nil
			return true
		case <-ctx.Done():
			return false
		}
	}
	flushStale := func(now time.Time) bool {
		for e, b := range open {
			if b != nil && now.Sub(opened[e]) >= cfg.FlushInterval {
				if !dispatch(e) {
					return false
				}
			}
		}
		return true
	}
	var n int64
	for cfg.Events == 0 || n < cfg.Events {
		if ctx.Err() != nil {
			break
		}
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(n) / cfg.Rate * float64(time.Second)))
			if wait := time.Until(due); wait > time.Millisecond {
				if sleepCtx(ctx, min(wait, cfg.FlushInterval)) != nil || !flushStale(time.Now()) {
					break
				}
				continue
			}
			if n%64 == 0 && !flushStale(time.Now()) {
				break
			}
		}
		scratch = gen.AppendNext(scratch[:0], &meta)
		n++
		if meta.Visit != nil {
			fl.startVisit(meta.Visit, time.Now())
			meta.Visit = nil
			if len(scratch) == 0 {
				continue
			}
		}
		e := meta.Store % len(cfg.Edges)
		if open[e] == nil {
			b := pool.Get().(*Batch)
			b.Reset()
			b.Edge = e
			open[e] = b
			opened[e] = time.Now()
		}
		open[e].Add(scratch, &meta)
		if open[e].Len() >= cfg.Batch && !dispatch(e) {
			break
		}
		if cfg.Rate == 0 && n%1024 == 0 && !flushStale(time.Now()) {
			break
		}
	}
	for _, b := range open {
		if b == nil {
			continue
		}
		select {
		case queue <- b:
		case <-runCtx.Done():
			return
		}
	}
}

// latencyHist is a lock-free histogram of durations in buckets growing by
// 10%, from 10 µs to about 2 minutes.
type latencyHist struct {
	counts [histBuckets]atomic.Int64
}

const (
	histBuckets = 180
	histBase    = 10 * time.Microsecond
	histGrowth  = 1.1
)

var logGrowth = math.Log(histGrowth)

func (h *latencyHist) observe(d time.Duration) {
	i := 0
	if d > histBase {
		i = int(math.Log(float64(d)/float64(histBase))/logGrowth) + 1
	}
	h.counts[min(i, histBuckets-1)].Add(1)
}

type histSnapshot [histBuckets]int64

func (h *latencyHist) snapshot() histSnapshot {
	var s histSnapshot
	for i := range h.counts {
		s[i] = h.counts[i].Load()
	}
	return s
}

func (s histSnapshot) sub(o histSnapshot) histSnapshot {
	for i := range s {
		s[i] -= o[i]
	}
	return s
}

// quantile returns the upper bound of the bucket holding quantile q, or 0
// for an empty histogram.
func (s histSnapshot) quantile(q float64) time.Duration {
	var total int64
	for _, c := range s {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	var cum int64
	for i, c := range s {
		cum += c
		if cum >= rank {
			return time.Duration(float64(histBase) * math.Pow(histGrowth, float64(i)))
		}
	}
	return time.Duration(float64(histBase) * math.Pow(histGrowth, histBuckets-1))
}
