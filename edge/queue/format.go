package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Key and value layout; see the package documentation.
const (
	prefixEvent  byte = 'e'
	keyLen            = 1 + 8
	valueVersion byte = 1
	// headerLen is the fixed part of a value header: version, received-at
	// (Unix nanoseconds, big-endian), channel length.
	headerLen = 1 + 8 + 1
	metaLen   = 1 + 8 + 8
)

var metaKey = []byte{'m'}

// errCorrupt is wrapped by decodeValue errors.
var errCorrupt = errors.New("corrupt record")

func eventKey(dst []byte, seq uint64) []byte {
	dst = append(dst, prefixEvent)
	return binary.BigEndian.AppendUint64(dst, seq)
}

func keySeq(k []byte) (uint64, bool) {
	if len(k) != keyLen || k[0] != prefixEvent {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

func appendValue(dst []byte, at time.Time, ch string, data []byte) []byte {
	dst = append(dst, valueVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(at.UnixNano()))
	dst = append(dst, byte(len(ch)))
	dst = append(dst, ch...)
	return append(dst, data...)
}

// decodeValue splits a stored value. data aliases v.
func decodeValue(v []byte) (at time.Time, ch string, data []byte, err error) {
	if len(v) < headerLen {
		return at, "", nil, fmt.Errorf("%w: %d bytes, header needs %d", errCorrupt, len(v), headerLen)
	}
	if v[0] != valueVersion {
		return at, "", nil, fmt.Errorf("%w: version %d", errCorrupt, v[0])
	}
	n := int(v[9])
	if len(v) < headerLen+n+1 {
		return at, "", nil, fmt.Errorf("%w: %d bytes, channel length %d", errCorrupt, len(v), n)
	}
	at = time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9])))
	return at, string(v[headerLen : headerLen+n]), v[headerLen+n:], nil
}

// meta is the persisted counter: the next seq, and a head hint that is
// never above the lowest queued seq.
type meta struct {
	next uint64
	head uint64
}

func (m meta) encode() []byte {
	b := make([]byte, 0, metaLen)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, m.next)
	return binary.BigEndian.AppendUint64(b, m.head)
}

func decodeMeta(b []byte) (meta, error) {
	if len(b) != metaLen || b[0] != 1 {
		return meta{}, fmt.Errorf("meta key: %w: %d bytes", errCorrupt, len(b))
	}
	return meta{next: binary.BigEndian.Uint64(b[1:9]), head: binary.BigEndian.Uint64(b[9:])}, nil
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
