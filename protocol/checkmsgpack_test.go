package protocol

import (
	"errors"
	"testing"
)

// Each fixture is one msgpack value written byte by byte, in the manner of
// mochi-mqtt's packets/tpackets.go: the comment says what the byte means.
var checkMsgpackCases = []struct {
	name    string
	in      []byte
	depth   int // 0 means DefaultMaxDepth
	wantErr bool
}{
	// --- well formed ---
	{name: "nil", in: []byte{
		0xc0, // nil
	}},
	{name: "positive fixint", in: []byte{0x7f}},
	{name: "negative fixint", in: []byte{0xe0}},
	{name: "true", in: []byte{0xc3}},
	{name: "fixstr", in: []byte{
		0xa3,          // fixstr, 3 bytes
		'a', 'b', 'c', // payload
	}},
	{name: "empty fixmap", in: []byte{0x80}},
	{name: "empty fixarray", in: []byte{0x90}},
	{name: "fixmap one pair", in: []byte{
		0x81,      // fixmap, 1 pair
		0xa1, 'k', // key: fixstr "k"
		0x01, // value: fixint 1
	}},
	{name: "str8", in: []byte{
		0xd9, 0x02, // str8, length 2
		'h', 'i',
	}},
	{name: "bin16", in: []byte{
		0xc5, 0x00, 0x01, // bin16, length 1
		0xff,
	}},
	{name: "float64", in: []byte{
		0xcb,                                           // float64
		0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 1.5
	}},
	{name: "uint64", in: []byte{
		0xcf,                                           // uint64
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // max
	}},
	{name: "timestamp32", in: []byte{
		0xd6, 0xff, // fixext4, type -1 (timestamp)
		0x00, 0x00, 0x00, 0x01, // 1 second
	}},
	{name: "timestamp96", in: []byte{
		0xc7, 0x0c, 0xff, // ext8, length 12, type -1
		0x00, 0x00, 0x00, 0x00, // nanoseconds
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // seconds
	}},
	{name: "fixext16", in: []byte{
		0xd8, 0x05, // fixext16, type 5
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	}},
	{name: "array16 of two", in: []byte{
		0xdc, 0x00, 0x02, // array16, 2 items
		0xc2, // false
		0xc3, // true
	}},
	{name: "map32 of one", in: []byte{
		0xdf, 0x00, 0x00, 0x00, 0x01, // map32, 1 pair
		0xa0, // key ""
		0x90, // value []
	}},
	{name: "nested to the depth limit", depth: 3, in: []byte{
		0x91, // [ depth 1
		0x91, // [ depth 2
		0x91, // [ depth 3
		0xc0, // nil
	}},
	{name: "empty containers do not count as depth", depth: 1, in: []byte{
		0x91, // [ depth 1
		0x90, // [] (no items, no depth)
	}},

	// --- malformed ---
	{name: "empty input", in: []byte{}, wantErr: true},
	{name: "reserved 0xc1", in: []byte{
		0xc1, // never used
	}, wantErr: true},
	{name: "reserved 0xc1 inside array", in: []byte{
		0x92, // fixarray, 2 items
		0xc0, // nil
		0xc1, // never used
	}, wantErr: true},
	{name: "trailing byte", in: []byte{
		0xc0, // nil
		0xc0, // one value too many
	}, wantErr: true},
	{name: "truncated fixstr", in: []byte{
		0xa5,     // fixstr, 5 bytes
		'a', 'b', // only 2
	}, wantErr: true},
	{name: "truncated str8 length", in: []byte{
		0xd9, // str8, length byte missing
	}, wantErr: true},
	{name: "truncated str16 length", in: []byte{
		0xda, 0x00, // str16, one of two length bytes
	}, wantErr: true},
	{name: "truncated uint32", in: []byte{
		0xce,             // uint32
		0x00, 0x00, 0x01, // three of four bytes
	}, wantErr: true},
	{name: "truncated float64", in: []byte{
		0xcb,       // float64
		0x3f, 0xf8, // two of eight bytes
	}, wantErr: true},
	{name: "truncated fixext8", in: []byte{
		0xd7, 0xff, // fixext8, type -1
		0x00, // one of eight bytes
	}, wantErr: true},
	{name: "truncated ext8 type", in: []byte{
		0xc7, 0x00, // ext8, length 0, type byte missing
	}, wantErr: true},
	{name: "map missing a value", in: []byte{
		0x81,      // fixmap, 1 pair
		0xa1, 'k', // key, then nothing
	}, wantErr: true},
	{name: "array missing items", in: []byte{
		0x93, // fixarray, 3 items
		0x01, // one item
	}, wantErr: true},
	{name: "huge str32 length", in: []byte{
		0xdb, 0xff, 0xff, 0xff, 0xff, // str32, 4 GiB
		'x',
	}, wantErr: true},
	{name: "huge bin32 length", in: []byte{
		0xc6, 0x7f, 0xff, 0xff, 0xff, // bin32, 2 GiB
	}, wantErr: true},
	{name: "huge ext32 length", in: []byte{
		0xc9, 0xff, 0xff, 0xff, 0xf0, // ext32, ~4 GiB
		0x01, // type
	}, wantErr: true},
	{name: "huge array32 count", in: []byte{
		0xdd, 0xff, 0xff, 0xff, 0xff, // array32, 4 billion items
		0xc0, // one nil
	}, wantErr: true},
	{name: "huge map32 count", in: []byte{
		0xdf, 0x7f, 0xff, 0xff, 0xff, // map32, 2 billion pairs
		0xc0, 0xc0, // one pair
	}, wantErr: true},
	{name: "array16 count over remaining bytes", in: []byte{
		0xdc, 0x00, 0x03, // array16, 3 items
		0xc0, 0xc0, // 2 bytes left
	}, wantErr: true},
	{name: "map16 pairs over remaining bytes", in: []byte{
		0xde, 0x00, 0x02, // map16, 2 pairs = 4 values
		0xc0, 0xc0, 0xc0, // 3 bytes left
	}, wantErr: true},
	{name: "str8 length over payload", in: []byte{
		0xd9, 0xff, // str8, 255 bytes
		'a', // 1 byte
	}, wantErr: true},
	{name: "depth bomb", depth: 3, in: []byte{
		0x91, // [ depth 1
		0x91, // [ depth 2
		0x91, // [ depth 3
		0x91, // [ depth 4: over the limit
		0xc0,
	}, wantErr: true},
	{name: "map depth bomb", depth: 2, in: []byte{
		0x81, 0xa0, // {"": depth 1
		0x81, 0xa0, // {"": depth 2
		0x81, 0xa0, // {"": depth 3: over the limit
		0xc0,
	}, wantErr: true},
}

func TestCheckMsgpack(t *testing.T) {
	for _, tt := range checkMsgpackCases {
		t.Run(tt.name, func(t *testing.T) {
			depth := tt.depth
			if depth == 0 {
				depth = DefaultMaxDepth
			}
			err := checkMsgpack(tt.in, depth)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("checkMsgpack(% x) = %v, want ErrMalformed", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("checkMsgpack(% x) = %v", tt.in, err)
			}
		})
	}
}

// TestCheckMsgpackDepthBombs builds nestings far past every limit,
// including the fixed 64-level stack, and deep ones of each container form.
func TestCheckMsgpackDepthBombs(t *testing.T) {
	bomb := func(open []byte, n int) []byte {
		var b []byte
		for range n {
			b = append(b, open...)
		}
		return append(b, 0xc0)
	}
	tests := []struct {
		name  string
		open  []byte
		n     int
		depth int
		ok    bool
	}{
		{"fixarray at limit", []byte{0x91}, DefaultMaxDepth, DefaultMaxDepth, true},
		{"fixarray over limit", []byte{0x91}, DefaultMaxDepth + 1, DefaultMaxDepth, false},
		{"array16 over limit", []byte{0xdc, 0x00, 0x01}, DefaultMaxDepth + 1, DefaultMaxDepth, false},
		{"map32 over limit", []byte{0xdf, 0x00, 0x00, 0x00, 0x01, 0xa0}, DefaultMaxDepth + 1, DefaultMaxDepth, false},
		{"asked depth above stack is capped at 64", []byte{0x91}, 65, 1000, false},
		{"64 allowed when asked", []byte{0x91}, 64, 1000, true},
		{"100k deep", []byte{0x91}, 100000, DefaultMaxDepth, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkMsgpack(bomb(tt.open, tt.n), tt.depth)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("checkMsgpack(depth %d, limit %d) = %v, want ok=%t", tt.n, tt.depth, err, tt.ok)
			}
		})
	}
}

// TestCheckMsgpackNoAlloc checks that the structural check allocates
// nothing for a valid value, and only its error message otherwise, however
// large the lengths it is shown.
func TestCheckMsgpackNoAlloc(t *testing.T) {
	e := sampleEvent(0)
	b, err := MarshalEvent(&e)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = checkMsgpack(b, DefaultMaxDepth) }); n != 0 {
		t.Errorf("checkMsgpack(event) allocates %v times", n)
	}
	for _, in := range [][]byte{{0xdd, 0xff, 0xff, 0xff, 0xff}, {0xc1}, {0xdb, 0xff, 0xff, 0xff, 0xff}} {
		if n := testing.AllocsPerRun(100, func() { _ = checkMsgpack(in, DefaultMaxDepth) }); n > 4 {
			t.Errorf("checkMsgpack(% x) allocates %v times", in, n)
		}
	}
}

// TestUnmarshalRejectsMalformedBodies runs the fixtures through Unmarshal
// of every kind behind a valid header.
func TestUnmarshalRejectsMalformedBodies(t *testing.T) {
	for _, tt := range checkMsgpackCases {
		if !tt.wantErr || tt.depth != 0 {
			continue
		}
		for _, k := range allKinds {
			b := append([]byte{Magic, WireVersion, byte(k)}, tt.in...)
			if err := Unmarshal(b, newMessage(k), Limits{}); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s as %s: err = %v, want ErrMalformed", tt.name, k, err)
			}
		}
	}
}
