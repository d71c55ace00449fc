// Package mpack holds append-style msgpack writers that produce exactly
// what github.com/vmihailenco/msgpack/v5's encoder writes for the same Go
// value (TestMatchEncoder keeps them equal): int64 always as int64 (0xd3),
// float64 always as float64 (0xcb), the shortest string, map and array
// headers, and time.Time as the timestamp extension (-1). Hot encoders
// (the Segment path's events, the hub's profile records) use them instead
// of the reflection encoder; the reflection decoder reads what they write.
package mpack

import (
	"encoding/binary"
	"math"
	"time"
)

// AppendMapHeader writes the header of a map of n entries.
func AppendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

// AppendArrayHeader writes the header of an array of n elements.
func AppendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

// AppendStrHeader writes the header of a string of n bytes.
func AppendStrHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n < 256:
		return append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
}

// AppendStr writes s as a string.
func AppendStr[S ~string | ~[]byte](b []byte, s S) []byte {
	return append(AppendStrHeader(b, len(s)), s...)
}

// AppendBin writes b as binary data, as the encoder does for a []byte.
func AppendBin(dst, b []byte) []byte {
	switch n := len(b); {
	case n < 256:
		dst = append(dst, 0xc4, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xc5), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xc6), uint32(n))
	}
	return append(dst, b...)
}

// AppendInt64 writes i as an int64 (0xd3), as the encoder does for int64.
func AppendInt64(b []byte, i int64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(i))
}

// AppendFloat64 writes f as a float64 (0xcb).
func AppendFloat64(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(f))
}

// AppendBool writes v.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

// AppendNil writes nil.
func AppendNil(b []byte) []byte { return append(b, 0xc0) }

// AppendTime writes t as the msgpack timestamp extension in the 32-, 64- or
// 96-bit form, whichever the encoder would pick.
func AppendTime(b []byte, t time.Time) []byte {
	secs := uint64(t.Unix())
	if secs>>34 == 0 {
		data := uint64(t.Nanosecond())<<34 | secs
		if data&0xffffffff00000000 == 0 {
			return binary.BigEndian.AppendUint32(append(b, 0xd6, 0xff), uint32(data))
		}
		return binary.BigEndian.AppendUint64(append(b, 0xd7, 0xff), data)
	}
	b = append(b, 0xc7, 12, 0xff)
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	return binary.BigEndian.AppendUint64(b, secs)
}

// AppendUint64 writes u as a uint64 (0xcf), as the encoder does for uint64.
func AppendUint64(b []byte, u uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcf), u)
}
