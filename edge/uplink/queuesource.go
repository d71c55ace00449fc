package uplink

import (
	"context"

	"github.com/unico-cdp/unico/edge/queue"
)

// QueueSource adapts the edge's durable queue to Source. It implements
// Quarantiner.
func QueueSource(q *queue.Queue) Source { return queueSource{q} }

type queueSource struct{ q *queue.Queue }

func (s queueSource) Read(from uint64, maxEvents, maxBytes int) ([]Record, error) {
	recs, err := s.q.Read(from, maxEvents, maxBytes)
	out := make([]Record, len(recs))
	for i := range recs {
		out[i] = Record{Seq: recs[i].Seq, Data: recs[i].Data}
	}
	return out, err
}

func (s queueSource) Wait(ctx context.Context, seq uint64) error { return s.q.Wait(ctx, seq) }

func (s queueSource) Ack(first, last uint64) error { return s.q.Ack(first, last) }

func (s queueSource) Quarantine(seq uint64, hubError string) (bool, error) {
	return s.q.Quarantine(seq, hubError)
}
