// Package broker runs the MQTT broker the hub embeds by default, so that a
// single hub process is a complete deployment. Larger deployments point the
// hub and the edges at an external broker (Mosquitto, EMQX) instead.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/unico-cdp/unico/internal/brokerstop"
)

// Config configures the embedded broker.
type Config struct {
	// Users maps a username to its password. Empty allows anonymous
	// clients (fine on loopback and for demos; give every edge its own
	// credentials in production).
	Users map[string]string
	// MaxPacketBytes bounds one MQTT packet; default 16 MiB.
	MaxPacketBytes uint32
}

// Broker is an embedded MQTT broker. The hub's own intake uses it inline
// (Subscribe, Publish): messages reach it as function calls, without an
// MQTT connection.
type Broker struct {
	srv *mqtt.Server
	log *slog.Logger

	mu     sync.Mutex
	subIDs map[string]int // inline subscription identifier by filter
	lastID int
}

// New returns a broker; it serves once Serve is called.
func New(cfg Config, logger *slog.Logger) (*Broker, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = slog.New(connLog{logger.Handler()})
	if cfg.MaxPacketBytes == 0 {
		cfg.MaxPacketBytes = 16 << 20
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.MaxPacketBytes
	caps.MaximumClientWritesPending = 64 << 10
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       logger.With("component", "broker"),
		InlineClient: true,
	})
	var err error
	if len(cfg.Users) == 0 {
		err = srv.AddHook(new(auth.AllowHook), nil)
	} else {
		ledger := &auth.Ledger{Users: auth.Users{}}
		for u, p := range cfg.Users {
			ledger.Users[u] = auth.UserRule{Username: auth.RString(u), Password: auth.RString(p)}
		}
		err = srv.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger})
	}
	if err != nil {
		return nil, fmt.Errorf("broker auth: %w", err)
	}
	return &Broker{srv: srv, log: logger.With("component", "broker"), subIDs: map[string]int{}}, nil
}

// Serve accepts MQTT clients on ln until ctx is cancelled, then closes the
// broker and every client connection.
func (b *Broker) Serve(ctx context.Context, ln net.Listener) error {
	if err := b.srv.AddListener(listeners.NewNet("mqtt", ln)); err != nil {
		return fmt.Errorf("broker listener: %w", err)
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.log.Info("broker listening", "addr", ln.Addr().String())
	<-ctx.Done()
	if err := brokerstop.Close(b.srv, "mqtt"); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("broker close: %w", err)
	}
	return nil
}

// Clients returns the number of connected clients.
func (b *Broker) Clients() int { return b.srv.Clients.Len() }

// Subscribe calls handler with every message published on filter, on the
// goroutine of the client that published it, until Unsubscribe. A handler
// that blocks holds up that client's later packets, and no other
// client's. The payload is the handler's to keep. A filter is subscribed
// once; a shared subscription ($share/…) is not supported inline.
func (b *Broker) Subscribe(filter string, handler func(topic string, payload []byte)) error {
	if strings.HasPrefix(filter, "$share/") {
		return fmt.Errorf("inline subscription %q: shared subscriptions are for clients", filter)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subIDs[filter]; ok {
		return fmt.Errorf("inline subscription %q: already subscribed", filter)
	}
	b.lastID++
	id := b.lastID
	err := b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		handler(pk.TopicName, pk.Payload)
	})
	if err != nil {
		return fmt.Errorf("inline subscription %q: %w", filter, err)
	}
	b.subIDs[filter] = id
	return nil
}

// Unsubscribe ends the inline subscription to filter.
func (b *Broker) Unsubscribe(filter string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	id, ok := b.subIDs[filter]
	if !ok {
		return fmt.Errorf("inline subscription %q: not subscribed", filter)
	}
	delete(b.subIDs, filter)
	if err := b.srv.Unsubscribe(filter, id); err != nil {
		return fmt.Errorf("inline unsubscribe %q: %w", filter, err)
	}
	return nil
}

// Publish routes payload to the subscribers of topic with QoS 1, as a
// client's message would be. It returns once the broker has queued it for
// every subscriber.
func (b *Broker) Publish(topic string, payload []byte) error {
	if err := b.srv.Publish(topic, payload, false, 1); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}
