// Package intake consumes the edges' event batches from MQTT, commits them
// to the profile store and answers each with an application-level ack.
//
// The ack is published only after the store has durably committed every
// event of the batch, so an edge deletes nothing that the hub could still
// lose. Transport is at-least-once: the same batch may arrive twice (a lost
// ack, a reconnect); the store deduplicates by event id and the second
// arrival is acked again. A batch that cannot be decoded or does not match
// its topic is answered with a "rejected" ack, logged and counted; it never
// stops intake for other edges.
package intake

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

// Committer stores batches durably. CommitAsync returns once the batches
// are resolved and calls done when they are durable (see store.Store), so
// that intake resolves the next group while the last one is written.
type Committer interface {
	CommitAsync(ctx context.Context, bs []*protocol.Batch, done func([]store.Result, error))
}

// Config configures intake. Zero fields take the documented defaults.
type Config struct {
	// BrokerURL is mqtt://host:port or mqtts://host:port (also tcp://,
	// ssl://); user:password in the URL authenticate.
	BrokerURL string
	// ClientID defaults to "unico-hub-<hostname>-<pid>".
	ClientID string
	// Shared subscribes through the shared subscription group so several
	// hub workers split the edges; default true (set NoShare to disable).
	NoShare bool
	// Limits bound decoding; default protocol defaults.
	Limits protocol.Limits
	// QueueLen bounds decoded batches waiting for the store; default 32.
	QueueLen int
	// GroupEvents bounds the events of the batches committed together in
	// one group commit; default 4000.
	GroupEvents int
	// TLS configures mqtts; nil uses the system roots.
	TLS *tls.Config
	// ConnectTimeout defaults to 10s.
	ConnectTimeout time.Duration
	// OnCommit, when set, is called after every successful group commit
	// (the snapshot manager's wake-up). It must not block.
	OnCommit func()
	// Properties, when set, says which events' properties the store
	// reads (store.Store.ReadsProperties): batches are then decoded
	// without those of other events and without contexts
	// (protocol.UnmarshalLean), and the store keeps the events as the
	// edge encoded them. Unset, events are decoded whole.
	Properties func(typ, name, channel string) bool
	// Inline, when set, is a broker in the hub's own process (the
	// embedded one) that intake subscribes and publishes to directly,
	// without an MQTT connection: no copy of each batch to a socket and
	// back, no client session. BrokerURL, ClientID, NoShare, TLS and
	// ConnectTimeout are then unused.
	Inline Inline
}

// Inline is a broker in the same process (broker.Broker).
type Inline interface {
	// Subscribe calls handler for every message published on filter, on
	// the publishing client's goroutine, until Unsubscribe: a handler
	// that blocks holds up that client's next messages, and no one
	// else's. handler may keep payload.
	Subscribe(filter string, handler func(topic string, payload []byte)) error
	Unsubscribe(filter string) error
	// Publish routes payload to the subscribers of topic with QoS 1.
	Publish(topic string, payload []byte) error
}

type work struct {
	tenant, edge string
	batch        *protocol.Batch
	err          error
	// first and last are the sequence range of a rejected batch that
	// decoded, so that the edge knows which batch the rejection is for.
	first, last uint64
	received    time.Time
}

// Intake is the hub's batch consumer.
type Intake struct {
	cfg    Config
	store  Committer
	log    *slog.Logger
	client paho.Client
	queue  chan work
	done   chan struct{}
	// acks holds the groups handed to the store, in the order they were
	// received, for the acker to answer in that order once each is
	// durable.
	acks chan *pendingAcks

	connected atomic.Bool

	subsMu sync.Mutex
	subs   map[string]func(topic string, payload []byte)

	batches    *prometheus.CounterVec
	ingested   prometheus.Counter
	duplicates prometheus.Counter
	commitDur  prometheus.Histogram
	lag        prometheus.Histogram
	latency    prometheus.Histogram
}

// New validates cfg and returns an Intake; Run starts it. reg may be nil.
func New(cfg Config, st Committer, reg prometheus.Registerer, logger *slog.Logger) (*Intake, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 32
	}
	if cfg.GroupEvents <= 0 {
		cfg.GroupEvents = 4000
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.ClientID == "" {
		host, _ := os.Hostname()
		cfg.ClientID = fmt.Sprintf("unico-hub-%s-%d", host, os.Getpid())
	}
	in := &Intake{
		cfg: cfg, store: st, log: logger.With("component", "intake"),
		queue: make(chan work, cfg.QueueLen), done: make(chan struct{}),
		acks: make(chan *pendingAcks, cfg.QueueLen),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unico_hub_batches_total", Help: "Edge batches received, by result (ok, rejected, retry).",
		}, []string{"result"}),
		ingested: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unico_hub_events_ingested_total", Help: "Events committed to the profile store.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unico_hub_events_deduplicated_total", Help: "Events received again and recognised by id.",
		}),
		commitDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "unico_hub_batch_commit_seconds", Help: "Time to resolve and durably commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "unico_hub_batch_lag_seconds", Help: "Time from the edge sending a batch to its commit at the hub.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "unico_hub_event_latency_seconds",
			Help:    "Time from an edge accepting an event (its received-at) to the event's profile update committed at the hub; assumes synchronised clocks.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
		}),
	}
	if cfg.Inline == nil {
		opts, err := clientOptions(cfg)
		if err != nil {
			return nil, err
		}
		opts.SetOnConnectHandler(in.onConnect)
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) {
			in.connected.Store(false)
			in.log.Warn("broker connection lost", "err", err)
		})
		in.client = paho.NewClient(opts)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{in.batches, in.ingested, in.duplicates, in.commitDur, in.lag, in.latency,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "unico_hub_broker_connected", Help: "1 while intake is connected to the broker."},
				func() float64 {
					if in.connected.Load() {
						return 1
					}
					return 0
				})} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return in, nil
}

func clientOptions(cfg Config) (*paho.ClientOptions, error) {
	u, err := url.Parse(cfg.BrokerURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("broker-url %q: want mqtt://host:port or mqtts://host:port", cfg.BrokerURL)
	}
	opts := paho.NewClientOptions()
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp":
		opts.AddBroker("tcp://" + u.Host)
	case "mqtts", "ssl", "tls":
		opts.AddBroker("ssl://" + u.Host)
		tc := cfg.TLS
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		opts.SetTLSConfig(tc)
	default:
		return nil, fmt.Errorf("broker-url %q: unknown scheme %q", cfg.BrokerURL, u.Scheme)
	}
	if u.User != nil {
		opts.SetUsername(u.User.Username())
		if p, ok := u.User.Password(); ok {
			opts.SetPassword(p)
		}
	}
	opts.SetClientID(cfg.ClientID)
	opts.SetCleanSession(true)
	opts.SetOrderMatters(true)
	opts.SetAutoReconnect(true)
	opts.SetConnectRetry(true)
	opts.SetConnectRetryInterval(time.Second)
	opts.SetMaxReconnectInterval(10 * time.Second)
	opts.SetKeepAlive(15 * time.Second)
	opts.SetPingTimeout(10 * time.Second)
	opts.SetWriteTimeout(10 * time.Second)
	opts.SetConnectTimeout(cfg.ConnectTimeout)
	return opts, nil
}

// onConnect (re)subscribes; it runs on paho's goroutine and must not block
// on anything but the subscription itself.
func (in *Intake) onConnect(c paho.Client) {
	in.connected.Store(true)
	filter := protocol.HubBatchFilter(!in.cfg.NoShare)
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { in.onBatch(m.Topic(), m.Payload()) })
	in.subsMu.Lock()
	for f, h := range in.subs {
		h := h
		c.Subscribe(f, 1, func(_ paho.Client, m paho.Message) { h(m.Topic(), m.Payload()) })
	}
	in.subsMu.Unlock()
	go func() {
		if !tok.WaitTimeout(in.cfg.ConnectTimeout) || tok.Error() != nil {
			in.log.Error("subscribe failed; reconnecting", "filter", filter, "err", tok.Error())
			c.Disconnect(0)
			return
		}
		in.log.Info("subscribed", "filter", filter)
	}()
}

// subscribeInline subscribes to the batches and to the added filters
// through cfg.Inline. On an error it leaves nothing subscribed.
func (in *Intake) subscribeInline() (unsubscribe func(), err error) {
	var done []string
	unsubscribe = func() {
		for _, f := range done {
			if err := in.cfg.Inline.Unsubscribe(f); err != nil {
				in.log.Warn("unsubscribe", "filter", f, "err", err)
			}
		}
	}
	subs := map[string]func(string, []byte){protocol.HubBatchFilter(false): in.onBatch}
	in.subsMu.Lock()
	for f, h := range in.subs {
		subs[f] = h
	}
	in.subsMu.Unlock()
	for f, h := range subs {
		if err := in.cfg.Inline.Subscribe(f, h); err != nil {
			unsubscribe()
			return nil, fmt.Errorf("subscribe %s: %w", f, err)
		}
		done = append(done, f)
	}
	in.log.Info("subscribed to the embedded broker", "filters", len(done))
	return unsubscribe, nil
}

// onBatch decodes a batch and queues it for the store. It blocks when the
// queue is full, which pushes back on the broker connection (or, inline,
// on the edge's).
func (in *Intake) onBatch(topic string, payload []byte) {
	w := work{received: time.Now()}
	tenant, edge, leaf, err := protocol.ParseTopic(topic)
	if err != nil || leaf != "batch" {
		in.batches.WithLabelValues("rejected").Inc()
		in.log.Warn("batch on an unexpected topic", "topic", topic, "err", err)
		return
	}
	w.tenant, w.edge = tenant, edge
	var b protocol.Batch
	if err := in.decode(payload, &b); err != nil {
		w.err = fmt.Errorf("decode: %w", err)
	} else if b.EdgeID != edge || (b.Tenant != "" && b.Tenant != tenant) {
		w.err = fmt.Errorf("batch names edge %q tenant %q on the topic of edge %q tenant %q", b.EdgeID, b.Tenant, edge, tenant)
		w.first, w.last = b.FirstSeq, b.LastSeq
	} else if b.LastSeq < b.FirstSeq {
		w.err = fmt.Errorf("sequence range %d-%d is reversed", b.FirstSeq, b.LastSeq)
	} else {
		if b.Tenant == "" {
			b.Tenant = tenant
		}
		w.batch = &b
	}
	select {
	case in.queue <- w:
	case <-in.done:
		// Shutting down: the edge resends what was not acked.
	}
}

// decode decodes a batch into b, with b.Raw holding its events as the
// edge encoded them when they can be told apart, which the store then
// keeps. Only then is the decode lean (Config.Properties): the store never
// encodes those events again, so what is left out of them is not lost.
func (in *Intake) decode(payload []byte, b *protocol.Batch) error {
	raw, rawErr := protocol.BatchEventBytes(payload)
	lean := rawErr == nil && in.cfg.Properties != nil
	var err error
	if lean {
		err = protocol.UnmarshalLean(payload, b, in.cfg.Limits, in.cfg.Properties)
	} else {
		err = protocol.Unmarshal(payload, b, in.cfg.Limits)
	}
	switch {
	case err != nil:
		return err
	case rawErr == nil && len(raw) == len(b.Events):
		b.Raw = raw
	case lean:
		// Not expected (protocol's tests hold BatchEventBytes to the
		// decoder), but a lean event must never be stored re-encoded.
		*b = protocol.Batch{}
		return protocol.Unmarshal(payload, b, in.cfg.Limits)
	}
	return nil
}

// Run connects and commits batches until ctx is cancelled.
func (in *Intake) Run(ctx context.Context) error {
	if in.cfg.Inline != nil {
		unsubscribe, err := in.subscribeInline()
		if err != nil {
			return err
		}
		in.connected.Store(true)
		defer func() {
			in.connected.Store(false)
			unsubscribe()
		}()
	} else {
		tok := in.client.Connect()
		// With ConnectRetry the token completes once connected or on a
		// fatal error; do not block shutdown on it.
		go func() {
			tok.Wait()
			if err := tok.Error(); err != nil {
				in.log.Error("broker connect failed", "err", err)
			}
		}()
		defer in.client.Disconnect(250)
	}
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		in.acker()
	}()
	// Run before the unsubscribing or the disconnect above: a handler
	// waiting to queue a batch gives up once done is closed.
	defer func() {
		close(in.done)
		<-ackerDone
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case w := <-in.queue:
			// Group commit: take what else is waiting, up to GroupEvents.
			group := []work{w}
			n := w.events()
		more:
			for n < in.cfg.GroupEvents {
				select {
				case w2 := <-in.queue:
					group = append(group, w2)
					n += w2.events()
				default:
					break more
				}
			}
			in.handle(ctx, group)
		}
	}
}

func (w work) events() int {
	if w.batch == nil {
		return 0
	}
	return len(w.batch.Events)
}

// pendingAcks is a group of batches waiting for its commit.
type pendingAcks struct {
	group   []work
	landed  chan struct{} // closed once results and err are set
	results []store.Result
	err     error
}

// handle commits a group of batches and queues it for the acker. It
// returns when the group is resolved, before it is durable.
func (in *Intake) handle(ctx context.Context, group []work) {
	p := &pendingAcks{group: group, landed: make(chan struct{})}
	select {
	case in.acks <- p:
	case <-ctx.Done():
		return // shutting down: the edges resend what was not acked
	}
	var bs []*protocol.Batch
	for _, w := range group {
		if w.err == nil {
			bs = append(bs, w.batch)
		}
	}
	if len(bs) == 0 {
		close(p.landed)
		return
	}
	start := time.Now()
	in.store.CommitAsync(ctx, bs, func(results []store.Result, err error) {
		in.commitDur.Observe(time.Since(start).Seconds())
		if err != nil && !errors.Is(err, context.Canceled) {
			in.log.Error("commit failed; the edges will resend", "batches", len(bs), "err", err)
		}
		if err == nil && in.cfg.OnCommit != nil {
			in.cfg.OnCommit()
		}
		p.results, p.err = results, err
		close(p.landed)
	})
}

// acker answers the queued groups in the order they were received, each
// once its commit has landed: a rejection is never answered before the
// ack of a batch received earlier, as with a synchronous commit. It
// returns when intake stops.
func (in *Intake) acker() {
	for {
		select {
		case p := <-in.acks:
			select {
			case <-p.landed:
				in.ack(p.group, p.results, p.err)
			case <-in.done:
				return
			}
		case <-in.done:
			return
		}
	}
}

// ack answers every batch of group: results are the store's for the
// group's decoded batches, in order, or err says why they failed.
func (in *Intake) ack(group []work, results []store.Result, err error) {
	i := 0
	for _, w := range group {
		ack := protocol.Ack{EdgeID: w.edge}
		switch {
		case w.err != nil:
			ack.Status, ack.Error = protocol.AckRejected, w.err.Error()
			ack.FirstSeq, ack.LastSeq = w.first, w.last
			in.batches.WithLabelValues("rejected").Inc()
			in.log.Warn("batch rejected", "tenant", w.tenant, "edge", w.edge, "err", w.err)
		case err != nil:
			b := w.batch
			ack.FirstSeq, ack.LastSeq = b.FirstSeq, b.LastSeq
			ack.Status, ack.Error = protocol.AckRetry, "commit failed"
			in.batches.WithLabelValues("retry").Inc()
			i++
		default:
			b, res := w.batch, results[i]
			i++
			ack.FirstSeq, ack.LastSeq = b.FirstSeq, b.LastSeq
			ack.Status, ack.Accepted, ack.Duplicates = protocol.AckOK, res.Accepted, res.Duplicates
			in.batches.WithLabelValues("ok").Inc()
			in.ingested.Add(float64(res.Accepted))
			in.duplicates.Add(float64(res.Duplicates))
			now := time.Now()
			if !b.SentAt.IsZero() {
				in.lag.Observe(now.Sub(b.SentAt).Seconds())
			}
			if res.Accepted > 0 {
				for i := range b.Events {
					if ra := b.Events[i].ReceivedAt; !ra.IsZero() {
						in.latency.Observe(now.Sub(ra).Seconds())
					}
				}
			}
		}
		ack.AckedAt = time.Now().UTC()
		payload, perr := protocol.Marshal(&ack)
		if perr != nil {
			in.log.Error("encode ack", "err", perr)
			continue
		}
		// Not waiting for the PUBACK: a lost ack makes the edge resend, and
		// the store recognises the events.
		if err := in.Publish(protocol.AckTopic(w.tenant, w.edge), payload, 0); err != nil {
			in.log.Warn("publish ack", "edge", w.edge, "err", err)
		}
	}
}

// Publish sends payload on topic with QoS 1. Through a connection it waits
// up to timeout for the broker's PUBACK, or not at all if timeout is 0;
// inline it returns once the broker has routed the message.
func (in *Intake) Publish(topic string, payload []byte, timeout time.Duration) error {
	if in.cfg.Inline != nil {
		return in.cfg.Inline.Publish(topic, payload)
	}
	tok := in.client.Publish(topic, 1, false, payload)
	if timeout == 0 {
		return nil
	}
	if !tok.WaitTimeout(timeout) {
		return fmt.Errorf("publish %s: timeout", topic)
	}
	return tok.Error()
}

// Subscribe adds a subscription (QoS 1) made on every connection, such as
// the edges' snapshot acks. handler runs on the MQTT client's goroutine
// (inline, on the publishing client's): it must return quickly and must
// not publish and wait. Call it before Run.
func (in *Intake) Subscribe(filter string, handler func(topic string, payload []byte)) {
	in.subsMu.Lock()
	defer in.subsMu.Unlock()
	if in.subs == nil {
		in.subs = make(map[string]func(string, []byte))
	}
	in.subs[filter] = handler
}

// Connected reports whether intake is connected to the broker.
func (in *Intake) Connected() bool { return in.connected.Load() }
