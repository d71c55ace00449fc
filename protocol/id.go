package protocol

import (
	crand "crypto/rand"
	"math/rand/v2"
	"sync"
	"time"
)

// crockford is the Crockford base32 alphabet used by ULIDs; its byte order
// matches its sort order, so IDs sort by creation time.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// IDLen is the length of an ID made by IDGen.
const IDLen = 26

// IDGen makes globally unique, lexically sortable 26-character IDs in the
// ULID layout: 48 bits of milliseconds since the Unix epoch followed by 80
// random bits. Within one millisecond the random part is incremented, so IDs
// from one generator are strictly increasing. It is safe for concurrent use.
type IDGen struct {
	mu     sync.Mutex
	rng    *rand.ChaCha8
	lastMS uint64
	hi     uint16 // top 16 bits of the 80-bit random part
	lo     uint64 // low 64 bits
	now    func() time.Time
}

// NewIDGen returns a generator seeded from the operating system's entropy.
// now may be nil, meaning time.Now.
func NewIDGen(now func() time.Time) *IDGen {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // crypto/rand.Read never fails on supported platforms.
	if now == nil {
		now = time.Now
	}
	return &IDGen{rng: rand.NewChaCha8(seed), now: now}
}

// New returns a new ID.
func (g *IDGen) New() string {
	var b [IDLen]byte
	g.mu.Lock()
	ms := uint64(g.now().UnixMilli())
	if ms <= g.lastMS {
		ms = g.lastMS
		g.lo++
		if g.lo == 0 {
			g.hi++
		}
	} else {
		g.lastMS = ms
		g.hi = uint16(g.rng.Uint64())
		g.lo = g.rng.Uint64()
	}
	hi, lo := g.hi, g.lo
	g.mu.Unlock()
	encodeULID(&b, ms, hi, lo)
	return string(b[:])
}

// encodeULID writes 48 bits of ms and 80 bits of randomness (hi:lo) as 26
// base32 characters, most significant first.
func encodeULID(b *[IDLen]byte, ms uint64, hi uint16, lo uint64) {
	// 128 bits = ms(48) | hi(16) | lo(64); 26 chars × 5 bits = 130 bits, the
	// first char carries the top 3 bits.
	top := ms<<16 | uint64(hi) // 64 bits
	for i := IDLen - 1; i >= 0; i-- {
		b[i] = crockford[lo&31]
		lo = lo>>5 | (top&31)<<59
		top >>= 5
	}
}

// IDTime returns the creation time encoded in an ID made by IDGen, and false
// if id is not of that form.
func IDTime(id string) (time.Time, bool) {
	if len(id) != IDLen {
		return time.Time{}, false
	}
	// The first char carries only the top 3 of 128 bits; every char must
	// be in the alphabet.
	if id[0] > '7' {
		return time.Time{}, false
	}
	var ms uint64
	for i := 0; i < IDLen; i++ {
		v := indexCrockford(id[i])
		if v < 0 {
			return time.Time{}, false
		}
		if i < 10 {
			ms = ms<<5 | uint64(v)
		}
	}
	// The first 10 chars carry the top 50 of 130 bits: two zero bits of
	// padding and the 48-bit time.
	return time.UnixMilli(int64(ms)), true
}

func indexCrockford(c byte) int {
	for i := 0; i < len(crockford); i++ {
		if crockford[i] == c {
			return i
		}
	}
	return -1
}
