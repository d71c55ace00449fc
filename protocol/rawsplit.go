package protocol

import "fmt"

// BatchEventBytes returns the encoded bytes of each event of a wire batch
// that Unmarshal accepted: sub-slices of b, in the order of Batch.Events,
// each in the form MarshalEvent makes and UnmarshalEvent reads. A receiver
// that stores events as they came (the hub) keeps these instead of encoding
// the decoded events again. It does not allocate beyond the returned slice.
func BatchEventBytes(b []byte) ([][]byte, error) {
	if _, err := PeekKind(b); err != nil {
		return nil, err
	}
	if Kind(b[2]) != KindBatch {
		return nil, fmt.Errorf("%w: got %s, want %s", ErrKind, Kind(b[2]), KindBatch)
	}
	body := b[headerLen:]
	n, i, ok := readContainerHeader(body, 0, true)
	if !ok {
		return nil, fmt.Errorf("batch: %w: not a map", ErrMalformed)
	}
	// msgpack keeps the last of repeated keys; so does this walk.
	var out [][]byte
	for range n {
		key, next, ok := readStr(body, i)
		if !ok {
			return nil, fmt.Errorf("batch: %w: key is not a string", ErrMalformed)
		}
		i = next
		if string(key) != "ev" {
			i = skipValue(body, i)
			continue
		}
		if i < len(body) && body[i] == 0xc0 { // nil: no events
			out = nil
			i++
			continue
		}
		m, next, ok := readContainerHeader(body, i, false)
		if !ok {
			return nil, fmt.Errorf("batch.ev: %w: not an array", ErrMalformed)
		}
		if m > MaxBatchEvents || m > len(body)-next {
			return nil, fmt.Errorf("batch.ev: %d events: %w", m, ErrTooLarge)
		}
		i = next
		out = make([][]byte, m)
		for k := range out {
			end := skipValue(body, i)
			if end <= i || end > len(body) {
				return nil, fmt.Errorf("batch.ev[%d]: %w", k, ErrMalformed)
			}
			out[k] = body[i:end:end]
			i = end
		}
	}
	return out, nil
}
