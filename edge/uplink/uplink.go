// Package uplink is the edge agent's forwarder. It drains the durable event
// queue to the hub over MQTT: it reads queued events from the head, packs
// them into batches, publishes them at QoS 1 with a window of batches in
// flight, and deletes events from the queue only when the hub's
// application-level ack says they are durably committed at the hub.
//
// Delivery is at-least-once. A paho publish token completing is never taken
// as proof of delivery (a token can complete although the broker never got
// the message, and brokers drop from full queues). On every (re)connect the
// forwarder forgets what it had in flight and resends from the first event
// the hub has not acked; the hub deduplicates by event id.
//
// Ack statuses from the hub:
//   - ok: the batch's range is deleted from the queue and the window slides.
//   - retry: the batch and everything after it are resent after a backoff.
//   - rejected: the hub cannot decode or validate the batch. When it
//     cannot decode it, the ack names no range (0-0); it applies to the
//     oldest publish of the connection not answered yet, since the hub
//     answers an edge's batches in order. The forwarder
//     never deletes or skips events the hub has not committed on the
//     strength of one rejection; it isolates the cause instead (below).
//
// # Isolating rejected events
//
// The hub rejects a whole batch when it cannot decode or validate it, so
// one event it cannot accept (corrupt bytes, version skew, a limit the hub
// enforces and the edge does not) would block every later event of the
// edge. When a batch of several events is rejected, the forwarder resends
// its range at once in halves (batches of at most half its events, in seq
// order, the window continuing after the range as usual), and halves again
// whenever a part is rejected, down to single events. A part the hub
// accepts is delivered and deleted like any batch; a range whose halves are
// all accepted (the rejection was transient) is simply delivered.
//
// A single event the hub rejects is resent after a backoff (MinBackoff
// doubling up to MaxBackoff). Once the hub has rejected it QuarantineAfter
// times, the forwarder moves it to the queue's quarantine (Quarantiner)
// with the hub's error, logs it at error level, and forwarding goes on
// with the next event. A hub that refuses everything (after a wire-format
// change, say) must not empty the queue into the quarantine: at most
// MaxQuarantineRun events are quarantined in a row without the hub
// accepting a batch of this edge in between; then, and when the Source is
// no Quarantiner, the event is kept and resent with the backoff, and the
// edge stalls visibly (Stats.Rejected and the error log) until the hub
// accepts something again. A rejected range after the one being isolated
// is resent whole after a backoff and isolated in its turn.
//
// The hub may accept the batches in flight after a rejected range before
// the range's halves, as after a retry ack; it does not depend on order.
package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/unico-cdp/unico/protocol"
)

// Errors that end a connection; Run logs them and reconnects.
var (
	// ErrAckTimeout means no ack arrived within AckTimeout while batches
	// were in flight.
	ErrAckTimeout = errors.New("no ack from hub within AckTimeout")
	// ErrConnectionLost means the MQTT connection dropped.
	ErrConnectionLost = errors.New("mqtt connection lost")
	// ErrConnect means connecting or subscribing to the broker failed.
	ErrConnect = errors.New("mqtt connect failed")
)

// ErrRunning is returned by Run when the forwarder is already running.
var ErrRunning = errors.New("uplink already running")

// Record is one queued event as the forwarder needs it.
type Record struct {
	Seq uint64
	// Data is the event encoded with protocol.MarshalEvent; it is put
	// into the batch without decoding.
	Data []byte
}

// Source is the durable queue the forwarder drains (the edge agent adapts
// edge/queue's Queue to it). The forwarder calls Read, Ack and Wait from
// three different goroutines, each method from one goroutine only.
type Source interface {
	// Read returns queued records with Seq >= from in seq order, at most
	// maxEvents and about maxBytes of Data, at least one when any is queued.
	Read(from uint64, maxEvents, maxBytes int) ([]Record, error)
	// Wait blocks until a record with Seq >= seq is queued or ctx is done.
	Wait(ctx context.Context, seq uint64) error
	// Ack deletes the records with first <= Seq <= last, durably. Seqs
	// already deleted are ignored, so a failed Ack can be retried.
	Ack(first, last uint64) error
}

// Quarantiner is implemented by a Source that can set a single event aside
// (edge/queue's quarantine, through QueueSource). The forwarder calls it
// from the goroutine that calls Read.
type Quarantiner interface {
	// Quarantine moves the record seq out of the source together with the
	// hub's error text, durably and atomically; Read never returns it
	// again. It reports false when seq is not in the source.
	Quarantine(seq uint64, hubError string) (bool, error)
}

// The forwarder deletes acked events off its sending path. The session
// goroutine hands every range the hub acked (ok) to a deleter goroutine and
// goes on reading and publishing; the deleter merges the adjacent ranges
// waiting for it and deletes each merged range with one Source.Ack, so a
// backlog drains with one durable delete per burst of acks instead of one
// per batch. The resume point moves on as soon as the hub acks: a range the
// hub acked is never resent in this process, whether or not it is deleted
// yet. If the process dies before a delete is durable, the range is resent
// after the restart and the hub recognises its events. A failing delete is
// retried with backoff; while it fails, at most deleteBuffer acked ranges
// wait, then the session blocks, so forwarding stops rather than piling up
// work.
const deleteBuffer = 2 * maxWindow

// maxUnanswered bounds the publishes remembered for the hub's answers that
// name no range: a window's worth several times over.
const maxUnanswered = 4*maxWindow + 64

// maxAckedAhead bounds Forwarder.ackedAhead; past it, acked ranges are
// forgotten and may be sent again (the hub answers them as duplicates).
const maxAckedAhead = 4 * maxWindow

// span is an inclusive range of seqs the hub acked.
type span struct{ first, last uint64 }

// Forwarder drains a Source to the hub. Create it with New and start it
// with Run.
type Forwarder struct {
	cfg    Config
	src    Source
	log    *slog.Logger
	broker broker
	tlsc   *tls.Config

	batchTopic string
	ackTopic   string

	running atomic.Bool

	// Statistics, read by Stats and the Prometheus collectors.
	connected       atomic.Bool
	lastAckAt       atomic.Int64 // unix nanoseconds, 0 before the first ack
	batchesSent     atomic.Uint64
	eventsForwarded atomic.Uint64
	resends         atomic.Uint64
	rejected        atomic.Uint64
	reconnects      atomic.Uint64
	inFlight        atomic.Int64
	quarantined     atomic.Uint64

	collectors collectorSet

	// current is the live connection, for Publish; nil when disconnected.
	current atomic.Pointer[mqtt.Client]

	// deletes carries acked ranges to the deleter; set by Run.
	deletes chan span
	// deletesFailed counts failed Source.Ack calls (each is retried).
	deletesFailed atomic.Uint64

	// Owned by the Run goroutine.
	floor       uint64 // lowest seq not known to be acked: the resume point
	highestSent uint64 // highest LastSeq ever published
	sentAny     bool
	iso         *isolation // the rejected range being isolated, or nil
	// ackedAhead are ranges above floor that the hub acked while an
	// earlier batch was still unanswered, and that left the window (the
	// connection ended, or the earlier batch was answered retry or
	// rejected and the window cut there): they are not sent, nor counted,
	// again, though their deletion from the source may not have happened
	// yet. At most maxAckedAhead.
	ackedAhead []span
	// run counts the events quarantined since the hub last acked (ok) a
	// batch of this edge.
	run int
}

// MaxQuarantineRun is the most events the forwarder quarantines in a row
// without the hub accepting a batch of this edge in between.
const MaxQuarantineRun = 5

// isolation is the state of a rejected range being bisected.
type isolation struct {
	first, last uint64 // the range the hub rejected last
	limit       int    // events per batch while sending first..last
	single      uint64 // the single event the hub rejected on its own, or 0
	rejects     int    // rejections of single
}

// New validates cfg and returns a Forwarder that drains src. A nil logger
// discards logs. Invalid config returns an error wrapping ErrConfig that
// names the field.
func New(cfg Config, logger *slog.Logger, src Source) (*Forwarder, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: source: nil", ErrConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b, err := parseBrokerURL(cfg.BrokerURL)
	if err != nil {
		return nil, err
	}
	if cfg.Username != "" {
		b.username = cfg.Username
	}
	if cfg.Password != "" {
		b.password = cfg.Password.Reveal()
	}
	tc, err := cfg.tlsConfig(b)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		cfg:        cfg,
		src:        src,
		log:        logger.With("component", "uplink"),
		broker:     b,
		tlsc:       tc,
		batchTopic: protocol.BatchTopic(cfg.Tenant, cfg.EdgeID),
		ackTopic:   protocol.AckTopic(cfg.Tenant, cfg.EdgeID),
	}
	f.collectors = newCollectors(f)
	return f, nil
}

// Run forwards until ctx is cancelled, reconnecting with capped exponential
// backoff and jitter after every connection failure. It returns nil on
// cancellation and ErrRunning if already running. Source errors are
// logged and retried like connection errors: the forwarder never gives up on
// the queue while ctx is live.
func (f *Forwarder) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer f.running.Store(false)
	f.deletes = make(chan span, deleteBuffer)
	deleterDone := make(chan struct{})
	go func() {
		defer close(deleterDone)
		f.deleteLoop(ctx, f.deletes)
	}()
	// The deleter finishes the ranges handed to it before Run returns, so
	// a clean shutdown leaves nothing acked in the queue.
	defer func() {
		close(f.deletes)
		<-deleterDone
	}()
	attempt := 0
	for {
		progressed, err := f.session(ctx)
		f.connected.Store(false)
		f.inFlight.Store(0)
		if ctx.Err() != nil {
			f.log.Info("uplink stopped")
			return nil
		}
		if progressed {
			attempt = 0
		}
		d := f.backoff(attempt)
		attempt++
		f.log.Warn("uplink disconnected, reconnecting", "err", err, "retry_in", d, "resume_seq", f.floor)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			f.log.Info("uplink stopped")
			return nil
		case <-t.C:
		}
		f.reconnects.Add(1)
	}
}

// backoff returns the delay before retry number attempt (0-based): MinBackoff
// doubled per attempt, capped at MaxBackoff, with "equal jitter" (a uniform
// random value in [d/2, d]) so that many edges restarting together spread
// their reconnects.
func (f *Forwarder) backoff(attempt int) time.Duration {
	d := f.cfg.MaxBackoff
	if attempt < 32 {
		if e := f.cfg.MinBackoff << attempt; e > 0 && e < d {
			d = e
		}
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// batch is one published batch awaiting the hub's ack.
type batch struct {
	first, last uint64
	events      int
	tok         mqtt.Token
	acked       bool
}

// connect dials the broker and subscribes to the ack topic and the extra
// subscriptions. The ack handler only copies the payload into acks; it never
// blocks and never calls paho.
func (f *Forwarder) connect(acks chan<- []byte, lost chan<- error) (mqtt.Client, error) {
	opts := mqtt.NewClientOptions().
		AddBroker(f.broker.url).
		SetClientID(f.cfg.ClientID).
		// CleanSession is safe: the broker's and paho's session stores
		// are not durable queues anyway. Badger is the only store of
		// record, and every connection resends from its first unacked
		// event and resubscribes.
		SetCleanSession(true).
		// Our own reconnect loop: on reconnect paho would complete the
		// old publish tokens and resend in arbitrary order.
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(f.cfg.KeepAlive).
		SetPingTimeout(f.cfg.WriteTimeout).
		SetWriteTimeout(f.cfg.WriteTimeout).
		SetConnectTimeout(f.cfg.ConnectTimeout).
		// Handlers run in arrival order on paho's router: snapshot
		// batches must reach the profile cache in the order the hub sent
		// them (an out-of-order batch is a gap, resent only after a
		// timeout). Every handler only hands the payload to a buffered
		// channel, so none can stall the network loop.
		SetOrderMatters(true).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if f.broker.username != "" {
		opts.SetUsername(f.broker.username)
		opts.SetPassword(f.broker.password)
	}
	if f.tlsc != nil {
		opts.SetTLSConfig(f.tlsc.Clone())
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(2*f.cfg.ConnectTimeout + time.Second) {
		c.Disconnect(0)
		return nil, fmt.Errorf("%w: %s: timeout", ErrConnect, f.broker.url)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConnect, f.broker.url, err)
	}
	subs := map[string]mqtt.MessageHandler{
		f.ackTopic: func(_ mqtt.Client, m mqtt.Message) {
			select {
			case acks <- m.Payload():
			default:
				// Full only if the hub floods us; a lost ack is
				// recovered by the watchdog's resend.
				f.log.Warn("ack dropped: ack buffer full")
			}
		},
	}
	for topic, h := range f.cfg.Subscriptions {
		subs[topic] = func(_ mqtt.Client, m mqtt.Message) { h(m.Payload()) }
	}
	for topic, h := range subs {
		st := c.Subscribe(topic, 1, h)
		if !st.WaitTimeout(f.cfg.ConnectTimeout) {
			c.Disconnect(0)
			return nil, fmt.Errorf("%w: subscribe %s: timeout", ErrConnect, topic)
		}
		if err := st.Error(); err != nil {
			c.Disconnect(0)
			return nil, fmt.Errorf("%w: subscribe %s: %w", ErrConnect, topic, err)
		}
		if q, ok := st.(*mqtt.SubscribeToken).Result()[topic]; ok && q >= 0x80 {
			c.Disconnect(0)
			return nil, fmt.Errorf("%w: subscribe %s: refused by broker", ErrConnect, topic)
		}
	}
	return c, nil
}

// session runs one connection: connect, subscribe, then publish batches
// from the resume point and process acks until an error or ctx is done.
// progressed reports whether the hub acked anything.
func (f *Forwarder) session(ctx context.Context) (progressed bool, err error) {
	acks := make(chan []byte, 4*f.cfg.Window+64)
	lost := make(chan error, 1)
	c, err := f.connect(acks, lost)
	if err != nil {
		return false, err
	}
	defer c.Disconnect(0)
	f.current.Store(&c)
	defer f.current.Store(nil)
	f.connected.Store(true)
	f.log.Info("uplink connected", "broker", f.broker.url, "resume_seq", f.floor)
	if f.cfg.OnConnect != nil {
		f.cfg.OnConnect()
	}

	var (
		window         []batch
		next           = f.floor
		pauseUntil     time.Time
		lastAckOrStart time.Time // watchdog reference
		retries        int       // consecutive retry/rejected answers
		waiting        bool
		events         [][]byte
		// unanswered lists this connection's publishes the hub has not
		// answered yet, oldest first, for answers that name no range.
		unanswered []span
		wake       = make(chan struct{}, 1)
		wg         sync.WaitGroup
	)
	wctx, wcancel := context.WithCancel(ctx)
	defer func() {
		wcancel()
		wg.Wait()
	}()
	// Batches the hub acked behind one it has not answered are not sent
	// again by the next connection.
	defer func() { f.keepAcked(window) }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	for {
		now := f.cfg.Now()
		// Fill the window.
		for len(window) < f.cfg.Window && !now.Before(pauseUntil) {
			if f.iso != nil && f.floor > f.iso.last {
				f.iso = nil // every event of the range was acked
			}
			maxEvents := f.cfg.MaxBatchEvents
			if iso := f.iso; iso != nil && next >= iso.first && next <= iso.last {
				maxEvents = min(maxEvents, iso.limit)
			}
			recs, err := f.src.Read(next, maxEvents, f.cfg.MaxBatchBytes)
			if err != nil {
				return progressed, fmt.Errorf("read queue from seq %d: %w", next, err)
			}
			recs, skipTo := f.cutAcked(f.iso.cut(next, recs))
			if skipTo > next {
				next = skipTo
				continue
			}
			if len(recs) == 0 {
				if !waiting {
					waiting = true
					wg.Add(1)
					go func(seq uint64) {
						defer wg.Done()
						_ = f.src.Wait(wctx, seq)
						select {
						case wake <- struct{}{}:
						default:
						}
					}(next)
				}
				break
			}
			events = events[:0]
			for i := range recs {
				events = append(events, recs[i].Data)
			}
			b := batch{first: recs[0].Seq, last: recs[len(recs)-1].Seq, events: len(recs)}
			payload, err := protocol.MarshalRawBatch(f.cfg.Tenant, f.cfg.EdgeID, b.first, b.last, now, events)
			if err != nil {
				return progressed, fmt.Errorf("encode batch %d-%d: %w", b.first, b.last, err)
			}
			b.tok = c.Publish(f.batchTopic, 1, false, payload)
			if len(unanswered) == maxUnanswered {
				unanswered = slices.Delete(unanswered, 0, 1)
			}
			unanswered = append(unanswered, span{b.first, b.last})
			if len(window) == 0 {
				lastAckOrStart = now
			}
			window = append(window, b)
			next = b.last + 1
			f.batchesSent.Add(1)
			if f.sentAny && b.first <= f.highestSent {
				f.resends.Add(1)
			}
			f.sentAny = true
			f.highestSent = max(f.highestSent, b.last)
		}
		f.inFlight.Store(int64(len(window)))

		// A failed publish ends the connection; a successful token
		// proves nothing and is ignored.
		for i := range window {
			select {
			case <-window[i].tok.Done():
				if err := window[i].tok.Error(); err != nil {
					return progressed, fmt.Errorf("publish batch %d-%d: %w", window[i].first, window[i].last, err)
				}
			default:
			}
		}

		// Watchdog.
		wait := time.Second
		if len(window) > 0 {
			left := lastAckOrStart.Add(f.cfg.AckTimeout).Sub(now)
			if left <= 0 {
				return progressed, fmt.Errorf("%w: %d batches in flight from seq %d", ErrAckTimeout, len(window), window[0].first)
			}
			wait = min(wait, left)
		}
		if now.Before(pauseUntil) {
			wait = min(wait, pauseUntil.Sub(now))
		}
		timer.Reset(wait)

		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case err := <-lost:
			return progressed, fmt.Errorf("%w: %w", ErrConnectionLost, err)
		case <-wake:
			waiting = false
		case <-timer.C:
		case p := <-acks:
			for {
				var a protocol.Ack
				if err := protocol.Unmarshal(p, &a, protocol.Limits{MaxPayload: 64 << 10}); err != nil {
					f.log.Warn("ignoring undecodable ack", "err", err)
				} else if a.EdgeID != f.cfg.EdgeID {
					f.log.Warn("ignoring ack for another edge", "edge", a.EdgeID)
				} else {
					if a.FirstSeq == 0 && a.LastSeq == 0 && a.Status != protocol.AckOK {
						// The hub could not decode the batch, so its
						// answer names no range (seqs start at 1). It
						// answers an edge's batches in order: this is
						// the oldest publish not answered yet, which may
						// be one no longer in the window.
						if len(unanswered) > 0 {
							a.FirstSeq, a.LastSeq = unanswered[0].first, unanswered[0].last
						}
					}
					if k := slices.Index(unanswered, span{a.FirstSeq, a.LastSeq}); k >= 0 {
						// Earlier publishes without an answer lost it.
						unanswered = slices.Delete(unanswered, 0, k+1)
					}
					matched := slices.ContainsFunc(window, func(b batch) bool { return b.first == a.FirstSeq && b.last == a.LastSeq })
					window, next, pauseUntil, retries, err = f.handleAck(ctx, a, window, next, pauseUntil, retries)
					if err != nil {
						return progressed, err
					}
					if matched {
						// Any answer from the hub for a batch in
						// flight shows the path works: the watchdog
						// restarts.
						lastAckOrStart = f.cfg.Now()
						progressed = progressed || a.Status == protocol.AckOK
					}
				}
				select {
				case p = <-acks:
					continue
				default:
				}
				break
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// handleAck applies one ack from the hub to the window.
func (f *Forwarder) handleAck(ctx context.Context, a protocol.Ack, window []batch, next uint64, pauseUntil time.Time, retries int) ([]batch, uint64, time.Time, int, error) {
	i := -1
	for j := range window {
		if window[j].first == a.FirstSeq && window[j].last == a.LastSeq {
			i = j
			break
		}
	}
	if i < 0 {
		if a.Status == protocol.AckOK {
			// Still proof that the hub accepts this edge's batches.
			f.run = 0
		}
		// An ack for a batch of an earlier connection or a duplicate.
		f.log.Debug("ignoring ack for no batch in flight", "first", a.FirstSeq, "last", a.LastSeq, "status", a.Status)
		return window, next, pauseUntil, retries, nil
	}
	now := f.cfg.Now()
	switch a.Status {
	case protocol.AckOK:
		f.run = 0
		if !window[i].acked {
			window[i].acked = true
			f.eventsForwarded.Add(uint64(window[i].events))
			f.lastAckAt.Store(now.UnixNano())
			if err := f.deleteLater(ctx, span{a.FirstSeq, a.LastSeq}); err != nil {
				return window, next, pauseUntil, retries, err
			}
		}
		for len(window) > 0 && window[0].acked {
			f.floor = window[0].last + 1
			window = window[1:]
		}
		f.floor = f.pastAcked(f.floor)
		return window, next, pauseUntil, 0, nil
	case protocol.AckRejected:
		f.rejected.Add(1)
		return f.rejectedBatch(a, window, i, pauseUntil, retries)
	default:
		if a.Status != protocol.AckRetry {
			f.log.Warn("unknown ack status, treating as retry", "status", a.Status)
		}
		d := f.backoff(retries)
		f.log.Info("hub asked to retry batch", "first", a.FirstSeq, "last", a.LastSeq, "hub_error", a.Error, "retry_in", d)
		return f.cutWindow(window, i), a.FirstSeq, now.Add(d), retries + 1, nil
	}
}

// cutWindow drops window[i:], batch i having been answered retry or
// rejected, to be sent again from its first seq; the batches after it that
// the hub has acked already go to ackedAhead.
func (f *Forwarder) cutWindow(window []batch, i int) []batch {
	f.keepAcked(window[i+1:])
	return window[:i]
}

// keepAcked adds the acked batches of window, which leave it unpopped, to
// ackedAhead.
func (f *Forwarder) keepAcked(window []batch) {
	for _, b := range window {
		if b.acked && len(f.ackedAhead) < maxAckedAhead {
			f.ackedAhead = append(f.ackedAhead, span{b.first, b.last})
		}
	}
}

// pastAcked returns seq moved past the ackedAhead ranges that hold it, and
// forgets the ranges below the result.
func (f *Forwarder) pastAcked(seq uint64) uint64 {
	for moved := true; moved; {
		moved = false
		for _, r := range f.ackedAhead {
			if r.first <= seq && seq <= r.last {
				seq, moved = r.last+1, true
			}
		}
	}
	f.ackedAhead = slices.DeleteFunc(f.ackedAhead, func(r span) bool { return r.last < seq })
	return seq
}

// cutAcked keeps the records before the first one in an ackedAhead range.
// When that is the first record, it returns none and the seq after the
// range, to read on from there.
func (f *Forwarder) cutAcked(recs []Record) (kept []Record, skipTo uint64) {
	if len(recs) == 0 || len(f.ackedAhead) == 0 {
		return recs, 0
	}
	first := recs[0].Seq
	bound := uint64(math.MaxUint64) // the first acked range above first
	for _, r := range f.ackedAhead {
		if r.first <= first && first <= r.last {
			return nil, r.last + 1
		}
		if r.first > first {
			bound = min(bound, r.first)
		}
	}
	for j := range recs {
		if recs[j].Seq >= bound {
			return recs[:j], 0
		}
	}
	return recs, 0
}

// cut drops the records a batch starting at next must not carry while
// iso is active: those after the rejected range when the batch starts in
// it, those from the range on when the batch starts before it.
func (iso *isolation) cut(next uint64, recs []Record) []Record {
	if iso == nil || next > iso.last {
		return recs
	}
	bound := iso.last
	if next < iso.first {
		bound = iso.first - 1
	}
	for j := range recs {
		if recs[j].Seq > bound {
			return recs[:j]
		}
	}
	return recs
}

// rejectedBatch handles the hub's rejection of window[i]: it bisects a
// batch of several events, resends a single event after a backoff and
// quarantines it once QuarantineAfter rejections are reached (see the
// package documentation).
func (f *Forwarder) rejectedBatch(a protocol.Ack, window []batch, i int, pauseUntil time.Time, retries int) ([]batch, uint64, time.Time, int, error) {
	b := window[i]
	window = f.cutWindow(window, i)
	now := f.cfg.Now()
	iso := f.iso
	if iso != nil && b.first > iso.last {
		d := f.backoff(retries)
		f.log.Error("hub rejected batch after the range being isolated; resending it after backoff",
			"first", b.first, "last", b.last, "hub_error", a.Error, "isolating_first", iso.first, "isolating_last", iso.last, "retry_in", d)
		return window, b.first, now.Add(d), retries + 1, nil
	}
	if iso == nil || b.first < iso.first || b.last > iso.last {
		iso = &isolation{}
		f.iso = iso
	}
	iso.first, iso.last = b.first, b.last
	if b.events > 1 {
		iso.limit = (b.events + 1) / 2
		f.log.Warn("hub rejected batch; resending it in halves to find the events it refuses",
			"first", b.first, "last", b.last, "events", b.events, "hub_error", a.Error, "rejected_total", f.rejected.Load())
		return window, b.first, pauseUntil, retries, nil
	}
	iso.limit = 1
	if iso.single != b.first {
		iso.single, iso.rejects = b.first, 0
	}
	iso.rejects++
	qr, canQuarantine := f.src.(Quarantiner)
	if canQuarantine && iso.rejects >= f.cfg.QuarantineAfter && f.run < MaxQuarantineRun {
		moved, err := qr.Quarantine(b.first, a.Error)
		if err != nil {
			return window, b.first, pauseUntil, retries, fmt.Errorf("quarantine event %d: %w", b.first, err)
		}
		if moved {
			f.run++
			f.quarantined.Add(1)
			f.log.Error("event quarantined: the hub rejects it on its own; see GET /v1/quarantine",
				"seq", b.first, "hub_error", a.Error, "rejections", iso.rejects, "quarantined_total", f.quarantined.Load())
		}
		f.iso = nil
		return window, b.last + 1, pauseUntil, 0, nil
	}
	d := f.backoff(iso.rejects - 1)
	switch {
	case iso.rejects < f.cfg.QuarantineAfter || !canQuarantine:
		f.log.Error("hub rejected a single event; resending it after backoff",
			"seq", b.first, "hub_error", a.Error, "rejections", iso.rejects, "retry_in", d)
	default:
		f.log.Error("hub rejected a single event; not quarantined: the hub has accepted no batch of this edge since the last events were quarantined",
			"seq", b.first, "hub_error", a.Error, "rejections", iso.rejects, "quarantined_in_a_row", f.run, "retry_in", d)
	}
	return window, b.first, now.Add(d), retries + 1, nil
}

// ErrNotConnected is returned by Publish while there is no connection.
var ErrNotConnected = errors.New("uplink not connected")

// Publish sends payload on topic at QoS 1 over the forwarder's connection
// (for snapshot acknowledgements and other edge-to-hub messages) and waits
// up to timeout for the broker's PUBACK. It is safe for concurrent use,
// including from Subscriptions handlers if they do not wait on it.
func (f *Forwarder) Publish(topic string, payload []byte, timeout time.Duration) error {
	cp := f.current.Load()
	if cp == nil {
		return ErrNotConnected
	}
	tok := (*cp).Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(timeout) {
		return fmt.Errorf("publish %s: no PUBACK within %v", topic, timeout)
	}
	return tok.Error()
}

// deleteLater hands an acked range to the deleter, waiting while its buffer
// is full.
func (f *Forwarder) deleteLater(ctx context.Context, s span) error {
	select {
	case f.deletes <- s:
		return nil
	default:
	}
	select {
	case f.deletes <- s:
		return nil
	case <-ctx.Done():
		// Not deleted: the range is resent after a restart.
		return ctx.Err()
	}
}

// deleteLoop deletes the ranges received on in from the source until in is
// closed. It merges adjacent waiting ranges into one Source.Ack and retries
// a failed one with backoff; once ctx is done it makes one last attempt per
// range instead of waiting.
func (f *Forwarder) deleteLoop(ctx context.Context, in <-chan span) {
	var pending []span
	attempt := 0
	open := true
	for open || len(pending) > 0 {
		if len(pending) == 0 {
			s, ok := <-in
			if !ok {
				return
			}
			pending = append(pending, s)
		}
	more:
		for open && len(pending) < deleteBuffer {
			select {
			case s, ok := <-in:
				if !ok {
					open = false
					break more
				}
				pending = append(pending, s)
			default:
				break more
			}
		}
		pending = mergeSpans(pending)
		for len(pending) > 0 {
			s := pending[0]
			err := f.src.Ack(s.first, s.last)
			if err == nil {
				pending = pending[1:]
				attempt = 0
				continue
			}
			f.deletesFailed.Add(1)
			if !open || ctx.Err() != nil {
				f.log.Error("delete of acked events failed at shutdown; they are resent after the restart",
					"first", s.first, "last", s.last, "err", err)
				pending = pending[1:]
				continue
			}
			d := f.backoff(attempt)
			attempt++
			f.log.Error("delete of acked events failed, retrying", "first", s.first, "last", s.last, "err", err, "retry_in", d)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			break
		}
	}
}

// mergeSpans sorts spans by first seq and merges those that overlap or
// touch. Spans with a gap between them stay apart: the gap is not acked.
func mergeSpans(ss []span) []span {
	slices.SortFunc(ss, func(a, b span) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	out := ss[:0]
	for _, s := range ss {
		if n := len(out); n > 0 && s.first <= out[n-1].last+1 {
			out[n-1].last = max(out[n-1].last, s.last)
			continue
		}
		out = append(out, s)
	}
	return out
}
