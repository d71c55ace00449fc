package protocol

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// trackBatch returns a Segment batch body of n realistic track messages of
// about 250 bytes each.
func trackBatch(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","messageId":"msg-%08d","userId":"u-%06d","event":"Product Added","properties":{"product_id":"p-%04d","sku":"SKU-%04d","price":"19.99","quantity":2},"context":{"channel":"kiosk","traits":{"email":"Ana.%d@Example.com"}},"timestamp":"2026-01-02T03:04:05.678Z"}`, i, i%5000, i%300, i%300, i%5000)
	}
	b.WriteString(`],"sentAt":"2026-01-02T03:04:06.000Z"}`)
	return []byte(b.String())
}

func reportPerEvent(b *testing.B, eventsPerOp int) {
	n := float64(b.N) * float64(eventsPerOp)
	sec := b.Elapsed().Seconds()
	b.ReportMetric(n/sec, "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/event")
}

func benchMapper(b *testing.B) *Mapper {
	m, err := NewMapper(MapOptions{Source: Source{Tenant: "acme", Edge: "edge-1"}, DefaultChannel: ChannelPOS, DefaultCountryCode: "39"})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func decodedEvents(b *testing.B, n int) []Event {
	evs, err := benchMapper(b).Decode(EndpointBatch, trackBatch(n), nil)
	if err != nil {
		b.Fatal(err)
	}
	return evs
}

func BenchmarkSegmentToEnvelope(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			m := benchMapper(b)
			body := trackBatch(n)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			var evs []Event
			for b.Loop() {
				var err error
				evs, err = m.Decode(EndpointBatch, body, evs[:0])
				if err != nil || len(evs) != n {
					b.Fatalf("Decode: %d events, %v", len(evs), err)
				}
			}
			reportPerEvent(b, n)
		})
	}
}

// benchBodies are the Segment requests the benchmarks decode: body=kiosk
// is trackBatch's (numbers as strings, context traits with an e-mail),
// body=edge the request of the edgebench ingest benchmark.
var benchBodies = []struct {
	name string
	body func(n int) []byte
}{
	{"kiosk", trackBatch},
	{"edge", edgeBatch},
}

// BenchmarkSegmentToStored measures what the edge does per request before
// its queue: Segment JSON to the stored msgpack of every event.
// path=map decodes into Events (maps for traits, properties and context)
// and encodes each with MarshalEvent, as the edge did before DecodeEncoded;
// path=direct is DecodeEncoded. body=edge is the request of the edgebench
// ingest benchmark, body=kiosk trackBatch's (numbers as strings, context
// traits with an e-mail).
func BenchmarkSegmentToStored(b *testing.B) {
	for _, bd := range benchBodies {
		for _, n := range []int{1, 100} {
			for _, path := range []string{"map", "direct"} {
				b.Run(fmt.Sprintf("body=%s/batch=%d/path=%s", bd.name, n, path), func(b *testing.B) {
					m := benchMapper(b)
					body := bd.body(n)
					b.ReportAllocs()
					b.SetBytes(int64(len(body)))
					var evs []Event
					var eb EncodedBatch
					stored := 0
					cpu0, cpuOK := processCPU()
					for b.Loop() {
						stored = 0
						if path == "direct" {
							if err := m.DecodeEncoded(EndpointBatch, body, &eb); err != nil || len(eb.Events) != n {
								b.Fatalf("DecodeEncoded: %d events, %v", len(eb.Events), err)
							}
							for _, e := range eb.Events {
								stored += len(e.Data)
							}
							continue
						}
						var err error
						if evs, err = m.Decode(EndpointBatch, body, evs[:0]); err != nil || len(evs) != n {
							b.Fatalf("Decode: %d events, %v", len(evs), err)
						}
						for i := range evs {
							data, err := MarshalEvent(&evs[i])
							if err != nil {
								b.Fatal(err)
							}
							stored += len(data)
						}
					}
					if cpu1, ok := processCPU(); ok && cpuOK {
						// The process's CPU time, garbage collection
						// included, per event.
						b.ReportMetric(float64(cpu1-cpu0)/float64(b.N*n), "cpu-ns/event")
					}
					reportPerEvent(b, n)
					b.ReportMetric(float64(stored)/float64(n), "stored-B/event")
				})
			}
		}
	}
}

// edgeBatch returns the /v1/batch body internal/edgebench posts: n track
// messages of about 250 bytes.
func edgeBatch(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","userId":"user-7","event":"Product Viewed","properties":{"sku":"SKU-%05d","price":19.99,"category":"shoes","size":"42"},"context":{"channel":"pos","device":{"id":"till-07"}},"timestamp":"2026-05-01T10:00:00Z"}`, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkMarshalBatch(b *testing.B) {
	const n = 100
	b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
		batch := &Batch{Tenant: "acme", EdgeID: "edge-1", FirstSeq: 1, LastSeq: n, SentAt: time.Now().UTC(), Events: decodedEvents(b, n)}
		enc, err := Marshal(batch)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		buf := make([]byte, 0, len(enc)*2)
		for b.Loop() {
			if buf, err = AppendMarshal(buf[:0], batch); err != nil {
				b.Fatal(err)
			}
		}
		reportPerEvent(b, n)
	})
}

func BenchmarkUnmarshalBatch(b *testing.B) {
	const n = 100
	b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
		enc, err := Marshal(&Batch{Tenant: "acme", EdgeID: "edge-1", FirstSeq: 1, LastSeq: n, SentAt: time.Now().UTC(), Events: decodedEvents(b, n)})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			var got Batch
			if err := Unmarshal(enc, &got, Limits{}); err != nil || len(got.Events) != n {
				b.Fatalf("Unmarshal: %d events, %v", len(got.Events), err)
			}
		}
		reportPerEvent(b, n)
	})
}

// BenchmarkRoundTrip follows an event from the edge's HTTP ingest to the
// hub: Segment JSON to envelopes, each stored as MarshalEvent bytes, a batch
// built from the stored bytes, decoded at the hub.
func BenchmarkRoundTrip(b *testing.B) {
	const n = 100
	b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
		m := benchMapper(b)
		body := trackBatch(n)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		var evs []Event
		raws := make([][]byte, n)
		for b.Loop() {
			var err error
			evs, err = m.Decode(EndpointBatch, body, evs[:0])
			if err != nil {
				b.Fatal(err)
			}
			for i := range evs {
				if raws[i], err = MarshalEvent(&evs[i]); err != nil {
					b.Fatal(err)
				}
			}
			enc, err := MarshalRawBatch("acme", "edge-1", 1, n, time.Now(), raws)
			if err != nil {
				b.Fatal(err)
			}
			var got Batch
			if err := Unmarshal(enc, &got, Limits{}); err != nil || len(got.Events) != n {
				b.Fatalf("Unmarshal: %d events, %v", len(got.Events), err)
			}
		}
		reportPerEvent(b, n)
	})
}
