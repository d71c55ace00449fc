package intake_test

import (
	"context"
	"net"
	"reflect"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/unico-cdp/unico/hub/broker"
	"github.com/unico-cdp/unico/hub/intake"
	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/internal/testkit"
	"github.com/unico-cdp/unico/protocol"
)

// TestAcksOverBothTransports runs intake against a real broker and store,
// through an MQTT connection (as with an external broker) and inline (as
// with the embedded one), each with and without credentials at the broker,
// and checks what an edge sees: an ok
// ack once its batch is committed, the same batch again acked as
// duplicates, a batch naming another edge rejected, its snapshot acks
// reaching the added subscription, and the hub's publications reaching it.
func TestAcksOverBothTransports(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inline bool
		users  map[string]string // the broker's credentials; the edge uses the first
	}{
		{"connection", false, nil},
		{"connection with credentials", false, map[string]string{"edge": "edge-pw", "hub": "hub-pw"}},
		{"inline", true, nil},
		// The hub needs no credentials of its own inline.
		{"inline with credentials", true, map[string]string{"edge": "edge-pw"}},
	} {
		inline := tc.inline
		t.Run(tc.name, func(t *testing.T) {
			snapAcks := make(chan string, 16)
			r := startRig(t, tc.users, func(brk *broker.Broker, addr string, _ *store.Store) intake.Config {
				url := "mqtt://" + addr
				if pw, ok := tc.users["hub"]; ok {
					url = "mqtt://hub:" + pw + "@" + addr
				}
				cfg := intake.Config{BrokerURL: url}
				if inline {
					cfg.Inline = brk
				}
				return cfg
			}, func(in *intake.Intake) {
				in.Subscribe(protocol.HubSnapAckFilter(false), func(topic string, _ []byte) { snapAcks <- topic })
			})
			ln, st, in := r.ln, r.st, r.in

			// The edge.
			acks := make(chan protocol.Ack, 64)
			snaps := make(chan []byte, 4)
			opts := paho.NewClientOptions().AddBroker("tcp://" + ln.Addr().String()).SetClientID("edge-e1").SetCleanSession(true)
			if pw, ok := tc.users["edge"]; ok {
				opts.SetUsername("edge").SetPassword(pw)
			}
			edge := paho.NewClient(opts)
			if tok := edge.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("edge connect: %v", tok.Error())
			}
			defer edge.Disconnect(0)
			for topic, h := range map[string]paho.MessageHandler{
				protocol.AckTopic("t1", "e1"): func(_ paho.Client, m paho.Message) {
					var a protocol.Ack
					if err := protocol.Unmarshal(m.Payload(), &a, protocol.Limits{}); err != nil {
						t.Errorf("ack: %v", err)
						return
					}
					acks <- a
				},
				protocol.SnapshotTopic("t1", "e1"): func(_ paho.Client, m paho.Message) { snaps <- m.Payload() },
			} {
				if tok := edge.Subscribe(topic, 1, h); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("edge subscribe: %v", tok.Error())
				}
			}
			publish := func(b *protocol.Batch) {
				t.Helper()
				payload, err := protocol.Marshal(b)
				if err != nil {
					t.Fatal(err)
				}
				if tok := edge.Publish(protocol.BatchTopic("t1", "e1"), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("publish: %v", tok.Error())
				}
			}
			next := func() protocol.Ack {
				t.Helper()
				return testkit.Receive(t, acks, 20*time.Second, "an ack")
			}
			now := time.Now().UTC()
			event := func(id, email string) protocol.Event {
				return protocol.Event{ID: id, Type: protocol.TypeTrack, Name: "Order Completed",
					Identifiers: []protocol.Identifier{{Type: "email", Value: email}}, OccurredAt: now, ReceivedAt: now}
			}
			first := &protocol.Batch{Tenant: "t1", EdgeID: "e1", FirstSeq: 1, LastSeq: 2, SentAt: now,
				Events: []protocol.Event{event("ev-1", "a@example.org"), event("ev-2", "b@example.org")}}

			// Through a connection the subscription may not be in place
			// yet: the edge sends until it hears back, as a real one does.
			// The first copy to arrive is the one committed.
			publish(first)
			var a protocol.Ack
			deadline := time.After(20 * time.Second)
			for got := false; !got; {
				select {
				case a = <-acks:
					got = true
				case <-time.After(200 * time.Millisecond):
					publish(first)
				case <-deadline:
					t.Fatal("no ack")
				}
			}
			if a.Status != protocol.AckOK || a.FirstSeq != 1 || a.LastSeq != 2 || a.Accepted != 2 || a.Duplicates != 0 {
				t.Fatalf("first ack = %+v, want ok 1-2 with 2 accepted", a)
			}
			// Copies sent while waiting are duplicates; so is this one.
			// How many of the copies arrived is unknown (those sent
			// before the subscription was in place are lost): from here
			// on, next passes over their acks.
			publish(first)
			duplicate := func(a protocol.Ack) bool {
				return a.Status == protocol.AckOK && a.FirstSeq == 1 && a.LastSeq == 2 && a.Accepted == 0 && a.Duplicates == 2
			}
			if a = next(); !duplicate(a) {
				t.Fatalf("ack of a resent batch = %+v, want 2 duplicates", a)
			}
			next0 := next
			next = func() protocol.Ack {
				t.Helper()
				for {
					if a := next0(); !duplicate(a) {
						return a
					}
				}
			}

			publish(&protocol.Batch{Tenant: "t1", EdgeID: "e2", FirstSeq: 3, LastSeq: 3, SentAt: now,
				Events: []protocol.Event{event("ev-3", "c@example.org")}})
			if a = next(); a.Status != protocol.AckRejected || a.FirstSeq != 3 || a.Error == "" {
				t.Fatalf("ack of a batch naming another edge = %+v, want rejected 3", a)
			}
			publish(&protocol.Batch{Tenant: "t1", EdgeID: "e1", FirstSeq: 3, LastSeq: 3, SentAt: now,
				Events: []protocol.Event{event("ev-3", "c@example.org")}})
			if a = next(); a.Status != protocol.AckOK || a.FirstSeq != 3 || a.Accepted != 1 {
				t.Fatalf("ack of the third event = %+v, want ok 3 with 1 accepted", a)
			}
			if p, err := st.Lookup(protocol.Identifier{Type: "email", Value: "c@example.org"}); err != nil {
				t.Fatalf("profile of the third event: %v", err)
			} else if p.Computed.Events != 1 {
				t.Fatalf("profile of the third event has %d events, want 1", p.Computed.Events)
			}

			if tok := edge.Publish(protocol.SnapshotAckTopic("t1", "e1"), 1, false, []byte("x")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish snapshot ack: %v", tok.Error())
			}
			if topic := testkit.Receive(t, snapAcks, 20*time.Second, "the snapshot ack at the added subscription"); topic != protocol.SnapshotAckTopic("t1", "e1") {
				t.Fatalf("snapshot ack on %q", topic)
			}
			if err := in.Publish(protocol.SnapshotTopic("t1", "e1"), []byte("snapshot"), 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if p := testkit.Receive(t, snaps, 20*time.Second, "the hub's publication at the edge"); string(p) != "snapshot" {
				t.Fatalf("edge got snapshot %q", p)
			}
		})
	}
}

// TestLeanDecodeKeepsEvents checks that intake's lean decode (contexts and
// the properties the store does not read left out) loses nothing: the
// store keeps the events as the edge encoded them, and the order's
// properties, which it reads, still count.
func TestLeanDecodeKeepsEvents(t *testing.T) {
	r := startRig(t, nil, func(brk *broker.Broker, _ string, st *store.Store) intake.Config {
		return intake.Config{Inline: brk, Properties: st.ReadsProperties}
	}, nil)
	ln, st := r.ln, r.st

	acks := make(chan protocol.Ack, 4)
	edge := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + ln.Addr().String()).SetClientID("edge-e1").SetCleanSession(true))
	if tok := edge.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("edge connect: %v", tok.Error())
	}
	defer edge.Disconnect(0)
	if tok := edge.Subscribe(protocol.AckTopic("t1", "e1"), 1, func(_ paho.Client, m paho.Message) {
		var a protocol.Ack
		if err := protocol.Unmarshal(m.Payload(), &a, protocol.Limits{}); err != nil {
			t.Errorf("ack: %v", err)
			return
		}
		acks <- a
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("edge subscribe: %v", tok.Error())
	}

	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	ids := []protocol.Identifier{{Type: "email", Value: "a@example.org"}}
	sent := []protocol.Event{
		{ID: "ev-1", Type: protocol.TypePage, Name: "Home", Channel: "web", Identifiers: ids, OccurredAt: at, ReceivedAt: at,
			Properties: map[string]any{"url": "https://shop.example.com/", "path": "/"},
			Context:    map[string]any{"ip": "192.0.2.1", "library": map[string]any{"name": "analytics.js", "version": "2.0"}}},
		{ID: "ev-2", Type: protocol.TypeTrack, Name: "Order Completed", Channel: "pos", Identifiers: ids, OccurredAt: at.Add(time.Minute), ReceivedAt: at,
			Properties: map[string]any{"revenue": 42.5, "products": []any{map[string]any{"product_id": "P1", "name": "Pillow"}}},
			Context:    map[string]any{"store_id": "S1"}},
	}
	payload, err := protocol.Marshal(&protocol.Batch{Tenant: "t1", EdgeID: "e1", FirstSeq: 1, LastSeq: 2, SentAt: at, Events: sent})
	if err != nil {
		t.Fatal(err)
	}
	if tok := edge.Publish(protocol.BatchTopic("t1", "e1"), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if a := testkit.Receive(t, acks, 20*time.Second, "an ack"); a.Status != protocol.AckOK || a.Accepted != 2 {
		t.Fatalf("ack = %+v, want ok with 2 accepted", a)
	}

	p, err := st.Lookup(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if p.Computed.Orders != 1 || p.Computed.Revenue.Float() != 42.5 || len(p.Computed.Purchases) != 1 || p.Computed.Purchases[0].Product != "P1" {
		t.Fatalf("order not counted from its properties: orders %d, revenue %v, purchases %+v", p.Computed.Orders, p.Computed.Revenue, p.Computed.Purchases)
	}
	got, _, err := st.Events(p.ID, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sent) {
		t.Fatalf("%d events stored, want %d", len(got), len(sent))
	}
	byID := map[string]protocol.Event{}
	for _, e := range got {
		byID[e.ID] = e
	}
	for _, want := range sent {
		e := byID[want.ID]
		if !reflect.DeepEqual(e.Properties, want.Properties) || !reflect.DeepEqual(e.Context, want.Context) {
			t.Fatalf("event %s stored with properties %v, context %v; sent %v, %v", want.ID, e.Properties, e.Context, want.Properties, want.Context)
		}
	}
}

// rig is a real broker and store with intake between them, running.
type rig struct {
	ln net.Listener
	st *store.Store
	in *intake.Intake
}

// startRig serves a broker with users (nil: anyone) on a free port, opens
// a store, builds intake with the config cfg returns, lets before (if
// set) add its subscriptions, runs intake and waits until it is
// connected. Everything stops when t ends, and an error of intake's or
// the broker's fails t.
func startRig(t *testing.T, users map[string]string, cfg func(brk *broker.Broker, addr string, st *store.Store) intake.Config, before func(in *intake.Intake)) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	brk, err := broker.New(broker.Config{Users: users}, testkit.Logger(t, -4))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- brk.Serve(ctx, ln) }()
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in, err := intake.New(cfg(brk, ln.Addr().String(), st), st, nil, testkit.Logger(t, -4))
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(in)
	}
	intakeDone := make(chan error, 1)
	go func() { intakeDone <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-intakeDone; err != nil {
			t.Error(err)
		}
		if err := <-brokerDone; err != nil {
			t.Error(err)
		}
	})
	testkit.WaitFor(t, 10*time.Second, "intake connected", in.Connected)
	return &rig{ln: ln, st: st, in: in}
}
