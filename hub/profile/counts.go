package profile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Counts counts events per key: visits per site, events per edge or
// channel. A profile has few keys per count and the hub's writer copies
// its profile's counts for every transaction that changes it, so they are
// a list sorted by key, copied in one allocation, rather than a map. They
// are written and read as a map (JSON and msgpack), as they were when
// they were one.
type Counts []Count

// Count is the count of one key.
type Count struct {
	Key string
	N   int64
}

func compareCount(c Count, key string) int { return strings.Compare(c.Key, key) }

// CountsOf returns the counts of m.
func CountsOf(m map[string]int64) Counts {
	if len(m) == 0 {
		return nil
	}
	c := make(Counts, 0, len(m))
	for k, n := range m {
		c = append(c, Count{k, n})
	}
	slices.SortFunc(c, func(a, b Count) int { return strings.Compare(a.Key, b.Key) })
	return c
}

// Get returns the count of key, 0 if it has none.
func (c Counts) Get(key string) int64 {
	if i, ok := slices.BinarySearchFunc(c, key, compareCount); ok {
		return c[i].N
	}
	return 0
}

// Add adds n to the count of key. It writes c's elements in place: a
// profile's clone copies its counts (Clone) before it changes them.
func (c *Counts) Add(key string, n int64) {
	i, ok := slices.BinarySearchFunc(*c, key, compareCount)
	if ok {
		(*c)[i].N += n
		return
	}
	*c = slices.Insert(*c, i, Count{key, n})
}

// Merge adds o's counts to c's, in place like Add.
func (c *Counts) Merge(o Counts) {
	for _, x := range o {
		c.Add(x.Key, x.N)
	}
}

// Clone returns a copy of c that Add may change without changing c.
func (c Counts) Clone() Counts {
	if c == nil {
		return nil
	}
	return slices.Clone(c)
}

// All yields the keys and their counts in key order.
func (c Counts) All() iter.Seq2[string, int64] {
	return func(yield func(string, int64) bool) {
		for _, x := range c {
			if !yield(x.Key, x.N) {
				return
			}
		}
	}
}

// MarshalJSON writes c as a JSON object, keys in order.
func (c Counts) MarshalJSON() ([]byte, error) {
	if c == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, x := range c {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(x.Key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		fmt.Fprintf(&b, ":%d", x.N)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads a JSON object of counts.
func (c *Counts) UnmarshalJSON(data []byte) error {
	var m map[string]int64
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	*c = CountsOf(m)
	return nil
}

var (
	_ msgpack.CustomEncoder = Counts(nil)
	_ msgpack.CustomDecoder = (*Counts)(nil)
)

// EncodeMsgpack writes c as a map, keys in order.
func (c Counts) EncodeMsgpack(enc *msgpack.Encoder) error {
	if c == nil {
		return enc.EncodeNil()
	}
	if err := enc.EncodeMapLen(len(c)); err != nil {
		return err
	}
	for _, x := range c {
		if err := enc.EncodeString(x.Key); err != nil {
			return err
		}
		if err := enc.EncodeInt64(x.N); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack reads a map of counts. A key written twice is counted
// once, with its last count, as a map would hold it.
func (c *Counts) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return err
	}
	if n < 0 {
		*c = nil
		return nil
	}
	out := make(Counts, 0, min(n, 64))
	for range n {
		k, err := dec.DecodeString()
		if err != nil {
			return err
		}
		v, err := dec.DecodeInt64()
		if err != nil {
			return err
		}
		out = append(out, Count{k, v})
	}
	slices.SortStableFunc(out, func(a, b Count) int { return strings.Compare(a.Key, b.Key) })
	// Keep the last of equal keys.
	dedup := out[:0]
	for i, x := range out {
		if i+1 < len(out) && out[i+1].Key == x.Key {
			continue
		}
		dedup = append(dedup, x)
	}
	*c = dedup
	return nil
}
