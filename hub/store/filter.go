package store

import (
	"hash/maphash"
	"math/bits"

	"github.com/dgraph-io/badger/v4"
)

// eventFilter is a Bloom filter of the ids of stored events: when it says
// an id is absent, the event is new and deduplication needs no Badger read
// (a lookup that misses searches every memtable and table). It may answer
// "maybe" for an absent id (about 1% of them), never "no" for a present
// one; so an id is added as soon as its event is written into a
// transaction, and one that never landed (a dropped transaction) only
// costs a read later.
//
// The filter grows by layers, each twice the capacity of the last, and
// stops growing at maxEvents ids: from then on it answers "maybe" for
// everything and deduplication reads Badger as it would without it.
// Memory is about 2 bytes per id at most.
type eventFilter struct {
	seed      maphash.Seed
	layers    []bloomLayer
	n         int // ids added
	maxEvents int
	full      bool
	first     int // capacity of the first layer
}

type bloomLayer struct {
	words []uint64
	mask  uint64 // bits-1; bits is a power of two
	n     int    // ids added
	cap   int    // ids it takes at about 1% false positives
}

const (
	// bloomProbes and bloomBitsPerID give under 1% false positives per
	// layer at capacity (10 bits per id rounded up to a power of two).
	bloomProbes    = 7
	bloomBitsPerID = 10
	// firstLayerIDs is the capacity of the first layer: 2 MiB of bits.
	firstLayerIDs = 1 << 20
)

func newEventFilter(maxEvents int) *eventFilter {
	return &eventFilter{seed: maphash.MakeSeed(), maxEvents: maxEvents, full: maxEvents <= 0, first: firstLayerIDs}
}

func newBloomLayer(capacity int) bloomLayer {
	nbits := max(uint64(1)<<bits.Len64(uint64(capacity*bloomBitsPerID-1)), 64)
	return bloomLayer{words: make([]uint64, nbits/64), mask: nbits - 1, cap: capacity}
}

// probes returns the two hashes of double hashing from the hash of an id.
func probes(h uint64) (h1, h2 uint64) {
	return h, (h >> 32) | (h << 32) | 1
}

func (f *eventFilter) add(id string) { f.addHash(maphash.String(f.seed, id)) }

func (f *eventFilter) addHash(h uint64) {
	if f.full {
		return
	}
	if f.n >= f.maxEvents {
		f.full, f.layers = true, nil
		return
	}
	if len(f.layers) == 0 || f.layers[len(f.layers)-1].n >= f.layers[len(f.layers)-1].cap {
		c := f.first
		if len(f.layers) > 0 {
			c = f.layers[len(f.layers)-1].cap * 2
		}
		f.layers = append(f.layers, newBloomLayer(min(c, max(f.maxEvents-f.n, 1))))
	}
	l := &f.layers[len(f.layers)-1]
	h1, h2 := probes(h)
	for i := range uint64(bloomProbes) {
		b := (h1 + i*h2) & l.mask
		l.words[b>>6] |= 1 << (b & 63)
	}
	l.n++
	f.n++
}

// mayContain reports whether id may have been added.
func (f *eventFilter) mayContain(id string) bool {
	if f.full {
		return true
	}
	h1, h2 := probes(maphash.String(f.seed, id))
	for li := range f.layers {
		l := &f.layers[li]
		hit := true
		for i := range uint64(bloomProbes) {
			b := (h1 + i*h2) & l.mask
			if l.words[b>>6]&(1<<(b&63)) == 0 {
				hit = false
				break
			}
		}
		if hit {
			return true
		}
	}
	return false
}

// load adds the id of every stored event, reading keys only.
func (f *eventFilter) load(txn *badger.Txn) {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	prefix := []byte{tEvent}
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix) && !f.full; it.Next() {
		f.addHash(maphash.Bytes(f.seed, it.Item().Key()[1:]))
	}
}
