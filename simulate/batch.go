package simulate

// Batch is a /v1/batch request body under construction together with the
// metadata of its messages. The zero Batch is ready to use.
type Batch struct {
	// Edge is the index of the edge the batch goes to.
	Edge  int
	body  []byte
	Metas []Meta
}

const batchHead = `{"batch":[`

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.body = append(b.body[:0], batchHead...)
	b.Metas = b.Metas[:0]
}

// Len returns the number of messages in the batch.
func (b *Batch) Len() int { return len(b.Metas) }

// Size returns the size in bytes of the body so far.
func (b *Batch) Size() int { return len(b.body) + 2 }

func (b *Batch) sep() {
	if len(b.body) == 0 {
		b.body = append(b.body, batchHead...)
	}
	if len(b.Metas) > 0 {
		b.body = append(b.body, ',')
	}
}

// Add appends one message, as written by Generator.AppendNext, and its
// metadata.
func (b *Batch) Add(msg []byte, m *Meta) {
	b.sep()
	b.body = append(b.body, msg...)
	b.Metas = append(b.Metas, *m)
}

// Body returns the request body. It stays valid until the batch is next
// changed.
func (b *Batch) Body() []byte {
	if len(b.body) == 0 {
		b.body = append(b.body, batchHead...)
	}
	return append(b.body, ']', '}')
}

// Fill generates n messages straight into b.
func (g *Generator) Fill(b *Batch, n int) {
	for range n {
		b.sep()
		b.Metas = append(b.Metas, Meta{})
		b.body = g.AppendNext(b.body, &b.Metas[len(b.Metas)-1])
	}
}
