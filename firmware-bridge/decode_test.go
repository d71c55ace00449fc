package bridge

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// header returns a frame header with count records, followed by recs; the
// caller appends the checksum with sealed.
func header(count byte) []byte {
	return []byte{
		0x55, 0x46, // magic "UF"
		0x01,                                           // version 1
		0x01,                                           // frame type: report
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // device id
		0x04, 0x03, 0x02, 0x01, // boot id 0x01020304
		0x05, 0x00, 0x00, 0x00, // seq 5
		0x10, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // uptime 10000 ms
		count, // record count
		0x00,  // flags
	}
}

// sealed appends the CRC-32C of b.
func sealed(b ...[]byte) []byte {
	out := slices.Concat(b...)
	return binary.LittleEndian.AppendUint32(out, checksum(out))
}

var sightingRec = []byte{
	0x01, 0x10, // sighting, length 16
	0x00,                                           // kind mac_hash
	0x08,                                           // id length 8
	0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, // id
	0xc4,                   // rssi -60
	0x03,                   // zone 3
	0xe8, 0x03, 0x00, 0x00, // age 1000 ms
}

var counterRec = []byte{
	0x02, 0x09, // counter, length 9
	0x02,       // door 2
	0x05, 0x00, // in 5
	0x01, 0x00, // out 1
	0x00, 0x00, 0x00, 0x00, // age 0
}

var shelfRec = []byte{
	0x03, 0x0c, // shelf, length 12
	0x07, 0x00, // shelf 7
	0x01,       // action put
	0x02, 0x00, // count 2
	0x00, 0x00, 0x00, 0x00, // age 0
	0x02,     // sku length 2
	'B', '9', // sku
}

var healthRec = []byte{
	0x04, 0x0a, // health, length 10
	0xff,                   // battery unknown (mains)
	0xc9,                   // wifi rssi -55
	0x00, 0x00, 0x01, 0x00, // free heap 65536
	0x03,          // firmware length 3
	'2', '.', '0', // firmware
}

func TestDecodeFixture(t *testing.T) {
	raw := sealed(header(4), sightingRec, counterRec, shelfRec, healthRec)
	got, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := &Frame{Version: 1, Type: FrameReport, DeviceID: dev1, BootID: 0x01020304, Seq: 5, UptimeMS: 10000, Records: []Record{
		{Type: RecordSighting, Sighting: Sighting{Kind: KindMACHash, ID: HexBytes{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7}, RSSI: -60, Zone: 3, AgeMS: 1000}},
		{Type: RecordCounter, Counter: Counter{Door: 2, In: 5, Out: 1}},
		{Type: RecordShelf, Shelf: Shelf{Shelf: 7, Action: ShelfPut, Count: 2, SKU: "B9"}},
		{Type: RecordHealth, Health: Health{Battery: BatteryUnknown, WiFiRSSI: -55, FreeHeap: 65536, Firmware: "2.0"}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Decode must not keep the caller's buffer.
	clear(raw)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after clearing the input (-want +got):\n%s", diff)
	}
}

// patch returns a copy of b with b[at] set to v.
func patch(b []byte, at int, v byte) []byte {
	c := slices.Clone(b)
	c[at] = v
	return c
}

func TestDecodeErrors(t *testing.T) {
	good := sealed(header(1), sightingRec)
	badCRC := patch(good, len(good)-1, good[len(good)-1]^0xff)
	tests := []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrTruncated, "offset 0: magic needs 2 bytes, frame has 0"},
		{"bad magic", []byte("GET / HTTP/1.1"), ErrMagic, "offset 0: magic 0x4745 is not 0x5546"},
		{"version 2", patch(good, 2, 2), ErrVersion, "offset 2: version 2 is not 1"},
		{"header cut", good[:20], ErrTruncated, "offset 20: header needs 34 bytes with checksum, frame has 20"},
		{"too large", make([]byte, MaxFrameBytes+1), ErrTooLarge, "offset 0: frame length 4097 exceeds 4096"},
		{"checksum", badCRC, ErrChecksum, ""},
		{"frame type 2", sealed(patch(header(0), 3, 2)), ErrVersion, "offset 3: frame type 2 unknown"},
		{"129 records", sealed(header(129)), ErrTooLarge, "offset 28: record count 129 exceeds 128"},
		{"flags", sealed(patch(header(0), 29, 1)), ErrField, "offset 29: flags 0x01: reserved bits set"},
		{"missing record", sealed(header(2), sightingRec), ErrTruncated, "record 1 at offset 48: record header needs 2 bytes, 0 left"},
		{"trailing", sealed(header(0), []byte{0}), ErrTrailing, "offset 30: after last record 1 bytes"},
		{"record type 5", sealed(header(1), []byte{0x05, 0x00}), ErrField, "record 0 at offset 30: record type 0x05 unknown"},
		{"record type 0", sealed(header(1), []byte{0x00, 0x00}), ErrField, "record 0 at offset 30: record type 0x00 unknown"},
		{"record longer than frame", sealed(header(1), []byte{0x01, 0xff}), ErrTruncated, "record 0 at offset 31: sighting: length 255 exceeds the 0 bytes left"},
		{"sighting id length 40", sealed(header(1), patch(sightingRec, 3, 40)), ErrField, "record 0 at offset 33: sighting: id length 40 outside 8-32"},
		{"sighting id length 7", sealed(header(1), patch(sightingRec, 3, 7)), ErrField, "record 0 at offset 33: sighting: id length 7 outside 8-32"},
		{"sighting length mismatch", sealed(header(1), patch(sightingRec, 1, 15), []byte{0}), ErrField, "record 0 at offset 31: sighting: length 15, want 16"},
		{"sighting kind 2", sealed(header(1), patch(sightingRec, 2, 2)), ErrField, "record 0 at offset 32: sighting: kind 2 unknown"},
		{"sighting age beyond uptime", sealed(header(1), patch(sightingRec, 16, 0xff)), ErrField, "record 0 at offset 44: sighting: age_ms 16712680 exceeds frame uptime 10000"},
		{"sighting too short", sealed(header(1), []byte{0x01, 0x01, 0x00}), ErrField, "record 0 at offset 31: sighting: length 1, want 16"},
		{"counter length", sealed(header(1), patch(counterRec, 1, 8)[:10]), ErrField, "record 0 at offset 31: counter: length 8, want 9"},
		{"shelf action 2", sealed(header(1), patch(shelfRec, 4, 2)), ErrField, "record 0 at offset 34: shelf: action 2 unknown"},
		{"shelf count 0", sealed(header(1), patch(shelfRec, 5, 0)), ErrField, "record 0 at offset 35: shelf: count 0, want at least 1"},
		{"shelf sku space", sealed(header(1), patch(shelfRec, 12, ' ')), ErrField, "record 0 at offset 42: shelf: sku byte 0x20 at 0 is not printable ASCII without space"},
		{"shelf sku length 0", sealed(header(1), patch(shelfRec, 11, 0)), ErrField, "record 0 at offset 41: shelf: sku length 0 outside 1-64"},
		{"health battery 101", sealed(header(1), patch(healthRec, 2, 101)), ErrField, "record 0 at offset 32: health: battery 101 outside 0-100 and not 255"},
		{"health firmware newline", sealed(header(1), patch(healthRec, 10, '\n')), ErrField, "record 0 at offset 40: health: firmware byte 0x0a at 1 is not printable ASCII"},
		{"health firmware length 33", sealed(header(1), patch(healthRec, 8, 33)), ErrField, "record 0 at offset 38: health: firmware length 33 outside 1-32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Decode(tt.in)
			if err == nil {
				t.Fatalf("Decode = %+v, want error", f)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q does not wrap %v", err, tt.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("error %T is not a *DecodeError", err)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("error\n got %q\nwant %q", err, tt.msg)
			}
		})
	}
}

func TestDecodeExtensionSkipped(t *testing.T) {
	raw := sealed(header(2), []byte{0xfe, 0x02, 0xaa, 0xbb}, counterRec)
	f, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{{Type: 0xfe, Extension: HexBytes{0xaa, 0xbb}}, {Type: RecordCounter, Counter: Counter{Door: 2, In: 5, Out: 1}}}
	if diff := cmp.Diff(want, f.Records); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestEncodeErrors(t *testing.T) {
	big := &Frame{UptimeMS: 1}
	for range 97 {
		big.Records = append(big.Records, Record{Type: RecordSighting, Sighting: Sighting{ID: make(HexBytes, 32)}})
	}
	tests := []struct {
		name string
		f    *Frame
		want error
	}{
		{"nil", nil, ErrField},
		{"version", &Frame{Version: 2}, ErrVersion},
		{"too many records", &Frame{Records: make([]Record, 129)}, ErrTooLarge},
		{"too many bytes", big, ErrTooLarge},
		{"id short", &Frame{Records: []Record{{Type: RecordSighting, Sighting: Sighting{ID: make(HexBytes, 7)}}}}, ErrField},
		{"age", &Frame{Records: []Record{{Type: RecordCounter, Counter: Counter{AgeMS: 1}}}}, ErrField},
		{"unknown type", &Frame{Records: []Record{{Type: 9}}}, ErrField},
		{"sku", &Frame{Records: []Record{{Type: RecordShelf, Shelf: Shelf{Count: 1, SKU: "a b"}}}}, ErrField},
		{"firmware", &Frame{Records: []Record{{Type: RecordHealth, Health: Health{Firmware: ""}}}}, ErrField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Encode(tt.f); !errors.Is(err, tt.want) {
				t.Errorf("Encode error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecodeAllocs(t *testing.T) {
	raw := sealed(header(4), sightingRec, counterRec, shelfRec, healthRec)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Decode(raw); err != nil {
			t.Fatal(err)
		}
	})
	// Frame, records, one copy for ids, one string copy for text.
	if allocs > 4 {
		t.Errorf("Decode allocates %v times, want at most 4", allocs)
	}
}
