package devices

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
)

// memQueue is an Appender that can be made to fail.
type memQueue struct {
	mu     sync.Mutex
	events []protocol.Event
	fail   bool
}

func (q *memQueue) Append(_ context.Context, evs []protocol.Event) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail {
		return errors.New("queue full")
	}
	q.events = append(q.events, evs...)
	return nil
}

func (q *memQueue) names() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, e := range q.events {
		out = append(out, e.Name)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func frame(t *testing.T, dev bridge.DeviceID, seq uint32, beacon byte) []byte {
	t.Helper()
	b, err := bridge.Encode(&bridge.Frame{Version: bridge.Version, Type: bridge.FrameReport, DeviceID: dev, BootID: 7, Seq: seq, UptimeMS: 60_000,
		Records: []bridge.Record{{Type: bridge.RecordSighting, Sighting: bridge.Sighting{Kind: bridge.KindBeaconID, ID: bridge.HexBytes{beacon, 1, 2, 3, 4, 5, 6, 7}, RSSI: -50, Zone: 2}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func start(t *testing.T, cfg Config, q *memQueue) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg.ListenAddr = addr
	d, err := New(cfg, q, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return addr
}

func device(t *testing.T, addr, user, pass string) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("dev-%s-%d", user, time.Now().UnixNano())).
		SetUsername(user).SetPassword(pass).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).SetWriteTimeout(5 * time.Second)
	c := paho.NewClient(opts)
	waitFor(t, "device connected", func() bool {
		tok := c.Connect()
		return tok.WaitTimeout(2*time.Second) && tok.Error() == nil
	})
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func TestFramesBecomeEvents(t *testing.T) {
	q := &memQueue{}
	dev := bridge.DeviceID{0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 1}
	addr := start(t, Config{Credentials: map[string]string{dev.String(): "s3cret"}}, q)
	c := device(t, addr, dev.String(), "s3cret")
	tok := c.Publish(TopicPrefix+dev.String()+TopicSuffix, 1, false, frame(t, dev, 0, 0x42))
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	// The PUBACK comes after the events are stored.
	if got := q.names(); len(got) != 1 || got[0] != bridge.EventEnter {
		t.Fatalf("events after PUBACK: %v", got)
	}
	q.mu.Lock()
	e := q.events[0]
	q.mu.Unlock()
	if e.Channel != protocol.ChannelIoT || len(e.Identifiers) != 1 || e.Identifiers[0].Type != "beacon_id" {
		t.Fatalf("event: %+v", e)
	}
}

func TestDeviceMayNotSpeakForAnother(t *testing.T) {
	q := &memQueue{}
	a := bridge.DeviceID{0, 0, 0, 0, 0, 0, 0, 0xa}
	b := bridge.DeviceID{0, 0, 0, 0, 0, 0, 0, 0xb}
	addr := start(t, Config{Credentials: map[string]string{a.String(): "pa", b.String(): "pb"}}, q)
	// Wrong password: refused.
	bad := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetUsername(a.String()).SetPassword("nope").SetClientID("bad"))
	if tok := bad.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		bad.Disconnect(0)
		t.Fatal("connected with a wrong password")
	}
	// Device a publishes on b's topic: the broker refuses it (and drops
	// the connection), nothing is stored.
	rogue := device(t, addr, a.String(), "pa")
	rogue.Publish(TopicPrefix+b.String()+TopicSuffix, 1, false, frame(t, b, 0, 1)).WaitTimeout(2 * time.Second)
	// Its own topic works, and the one above left nothing behind.
	c := device(t, addr, a.String(), "pa")
	if tok := c.Publish(TopicPrefix+a.String()+TopicSuffix, 1, false, frame(t, a, 0, 2)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	waitFor(t, "device a's event", func() bool { return len(q.names()) >= 1 })
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.events {
		if e.Source.Device != a.String() {
			t.Fatalf("event from device %q stored for a publish on another device's topic", e.Source.Device)
		}
	}
}

func TestUnstoredFrameIsNotAcknowledged(t *testing.T) {
	q := &memQueue{fail: true}
	dev := bridge.DeviceID{0, 0, 0, 0, 0, 0, 0, 0xc}
	addr := start(t, Config{AppendTimeout: 200 * time.Millisecond}, q)
	c := device(t, addr, "", "")
	tok := c.Publish(TopicPrefix+dev.String()+TopicSuffix, 1, false, frame(t, dev, 0, 3))
	if tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
		t.Fatal("PUBACK for a frame that was not stored")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{}, {ListenAddr: ":1", BrokerURL: "mqtt://x:1"}, {ListenAddr: ":1", Credentials: map[string]string{"ABC": "x"}}} {
		if _, err := New(cfg, &memQueue{}, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}
