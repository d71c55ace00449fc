package ingest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/unico-cdp/unico/protocol"
)

// benchBatch returns a /v1/batch body of n track messages of about 250
// bytes each.
func benchBatch(n, worker int) []byte {
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","userId":"user-%03d-%04d","event":"Product Viewed","properties":{"sku":"SKU-%05d","price":19.99,"category":"shoes","size":"42"},"context":{"channel":"pos","device":{"id":"till-07"}},"timestamp":"2026-05-01T10:00:00Z"}`, worker, i, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkIngest posts batches of 100 events over loopback HTTP from 16
// concurrent clients and reports events/s and the p50/p99 request latency.
// queue=badger appends to the real durable queue (fsync per group commit);
// queue=memory isolates the HTTP and decoding cost.
func BenchmarkIngest(b *testing.B) {
	const events, clients = 100, 16
	for _, backend := range []string{"badger", "memory"} {
		b.Run("queue="+backend+"/batch=100/clients=16", func(b *testing.B) {
			var app Appender = discardAppender{}
			if backend == "badger" {
				app = openQueue(b, 8<<30)
			}
			ts := startServer(b, Config{WriteKeys: []string{"k"}}, app)
			addr := strings.TrimPrefix(ts.url, "http://")
			hc := &fasthttp.HostClient{Addr: addr, MaxConns: clients, Dial: func(a string) (net.Conn, error) { return net.Dial("tcp", a) }}
			b.Cleanup(hc.CloseIdleConnections)
			bodies := make([][]byte, clients)
			for i := range bodies {
				bodies[i] = benchBatch(events, i)
			}
			b.SetBytes(int64(len(bodies[0])))
			b.ReportAllocs()

			var (
				mu   sync.Mutex
				lats []time.Duration
				next = make(chan struct{})
				wg   sync.WaitGroup
				fail = make(chan error, clients)
			)
			b.ResetTimer()
			start := time.Now()
			for c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req := fasthttp.AcquireRequest()
					resp := fasthttp.AcquireResponse()
					defer fasthttp.ReleaseRequest(req)
					defer fasthttp.ReleaseResponse(resp)
					req.SetRequestURI(ts.url + "/v1/batch")
					req.Header.SetMethod("POST")
					req.Header.Set("Authorization", basic("k"))
					req.SetBody(bodies[c])
					var mine []time.Duration
					for range next {
						t0 := time.Now()
						if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
							fail <- fmt.Errorf("request: %v %d %s", err, resp.StatusCode(), resp.Body())
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lats = append(lats, mine...)
					mu.Unlock()
				}()
			}
		feed:
			for b.Loop() {
				select {
				case next <- struct{}{}:
				case err := <-fail:
					b.Error(err)
					break feed
				}
			}
			close(next)
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if len(lats) == 0 {
				return
			}
			slices.Sort(lats)
			b.ReportMetric(float64(len(lats)*events)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

type discardAppender struct{}

func (discardAppender) AppendEncoded(ctx context.Context, evs []protocol.EncodedEvent) error {
	return ctx.Err()
}
