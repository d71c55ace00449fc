package queue_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

func encodedEvents(t testing.TB, ch string, from, n int) []protocol.EncodedEvent {
	t.Helper()
	out := make([]protocol.EncodedEvent, n)
	for i := range out {
		out[i] = protocol.EncodedEvent{Channel: ch, Data: encoded(t, event(ch, from+i))}
	}
	return out
}

// TestAppendEncoded checks that pre-encoded events are stored exactly as
// Append stores the same events: same records, sizes and counters.
func TestAppendEncoded(t *testing.T) {
	clock := &fixedClock{t: baseTime}
	a := open(t, queue.Options{Now: clock.Now})
	defer closeQ(t, a)
	b := open(t, queue.Options{Now: clock.Now})
	defer closeQ(t, b)
	for i, ch := range []string{"pos", "iot", ""} {
		if err := a.Append(t.Context(), events(ch, 10*i, 3)); err != nil {
			t.Fatal(err)
		}
		if err := b.AppendEncoded(t.Context(), encodedEvents(t, ch, 10*i, 3)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.AppendEncoded(t.Context(), nil); err != nil {
		t.Fatalf("empty AppendEncoded: %v", err)
	}
	want, err := a.Read(0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Read(0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 {
		t.Fatalf("%d records, want 9", len(got))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-Append +AppendEncoded):\n%s", diff)
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.Bytes != sb.Bytes || sa.Depth != sb.Depth || sb.Appended != 9 || sb.Commits == 0 {
		t.Errorf("stats: Append %+v, AppendEncoded %+v", sa, sb)
	}
}

// TestAppendEncodedCopies checks that the caller may reuse Data as soon as
// AppendEncoded returns.
func TestAppendEncodedCopies(t *testing.T) {
	q := open(t, queue.Options{})
	defer closeQ(t, q)
	evs := encodedEvents(t, "pos", 0, 2)
	orig := bytes.Clone(evs[1].Data)
	if err := q.AppendEncoded(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	for i := range evs[1].Data {
		evs[1].Data[i] = 0
	}
	recs, err := q.Read(0, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !bytes.Equal(recs[1].Data, orig) {
		t.Fatalf("stored data changed with the caller's buffer: %d records", len(recs))
	}
}

// TestAppendEncodedDropOldest runs the overflow policy on pre-encoded
// events: iot events drop the oldest iot events, pos events are refused.
func TestAppendEncodedDropOldest(t *testing.T) {
	size := queue.RecordSize(len(encoded(t, event("iot", 0))), "iot")
	q := open(t, queue.Options{
		QuotaBytes: 4 * size,
		Overflow:   map[string]queue.OverflowPolicy{"iot": queue.OverflowDropOldest},
	})
	defer closeQ(t, q)
	if err := q.AppendEncoded(t.Context(), encodedEvents(t, "pos", 0, 1)); err != nil {
		t.Fatal(err)
	}
	if err := q.AppendEncoded(t.Context(), encodedEvents(t, "iot", 1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := q.AppendEncoded(t.Context(), encodedEvents(t, "pos", 4, 1)); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("pos over quota: %v, want ErrFull", err)
	}
	if err := q.AppendEncoded(t.Context(), encodedEvents(t, "iot", 5, 2)); err != nil {
		t.Fatalf("iot over quota: %v, want the oldest iot dropped", err)
	}
	recs, err := q.Read(0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{1, 4, 5, 6}, seqs(recs)); diff != "" {
		t.Errorf("seqs (-want +got):\n%s", diff)
	}
	if st := q.Stats(); st.Dropped["iot"] != 2 || st.Depth != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestAppendEncodedRefused(t *testing.T) {
	q := open(t, queue.Options{})
	ok := encodedEvents(t, "pos", 0, 1)[0]
	tests := []struct {
		name string
		evs  []protocol.EncodedEvent
	}{
		{"data over MaxEventBytes", []protocol.EncodedEvent{ok, {Channel: "pos", Data: make([]byte, queue.MaxEventBytes+1)}}},
		{"channel over 255 bytes", []protocol.EncodedEvent{ok, {Channel: strings.Repeat("c", 256), Data: ok.Data}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := q.AppendEncoded(t.Context(), tt.evs); !errors.Is(err, queue.ErrTooLarge) {
				t.Fatalf("got %v, want ErrTooLarge", err)
			}
			if st := q.Stats(); st.Depth != 0 {
				t.Errorf("depth %d after a refused append", st.Depth)
			}
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	// A cancelled context may still win against a free committer; either
	// outcome is a whole one.
	if err := q.AppendEncoded(ctx, []protocol.EncodedEvent{ok}); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	closeQ(t, q)
	if err := q.AppendEncoded(t.Context(), []protocol.EncodedEvent{ok}); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

// TestAppendEncodedFromMapper stores what the Segment mapper writes and
// reads back the events Decode makes.
func TestAppendEncodedFromMapper(t *testing.T) {
	m, err := protocol.NewMapper(protocol.MapOptions{Source: protocol.Source{Tenant: "acme"}, DefaultCountryCode: "39", Now: func() time.Time { return baseTime }})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"batch":[{"type":"identify","messageId":"m1","userId":"u1","traits":{"email":" Ana@Example.com ","phone":"333 1234567","age":41,"tags":["a",{"b":null}]},"context":{"channel":"kiosk","device":{"id":"k-7"}}},
		{"type":"track","messageId":"m2","anonymousId":"a1","event":"Order Completed","properties":{"revenue":"12.50","products":[{"price":"2","sku":"s"}]}}]}`)
	want, err := m.Decode(protocol.EndpointBatch, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	var eb protocol.EncodedBatch
	if err := m.DecodeEncoded(protocol.EndpointBatch, body, &eb); err != nil {
		t.Fatal(err)
	}
	q := open(t, queue.Options{})
	defer closeQ(t, q)
	if err := q.AppendEncoded(t.Context(), eb.Events); err != nil {
		t.Fatal(err)
	}
	recs, err := q.Read(0, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		var got protocol.Event
		if err := protocol.UnmarshalEvent(r.Data, &got); err != nil {
			t.Fatal(err)
		}
		w := want[i]
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("event %d (-Decode +stored):\n%s", i, diff)
		}
		if r.Channel != w.Channel {
			t.Errorf("record %d channel %q, want %q", i, r.Channel, w.Channel)
		}
	}
}
