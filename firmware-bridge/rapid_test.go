package bridge

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// genFrame draws a valid frame that fits MaxFrameBytes.
func genFrame(t *rapid.T) *Frame {
	f := &Frame{
		Version:  Version,
		Type:     FrameReport,
		BootID:   rapid.Uint32().Draw(t, "boot"),
		Seq:      rapid.Uint32().Draw(t, "seq"),
		UptimeMS: rapid.Uint64().Draw(t, "uptime"),
	}
	copy(f.DeviceID[:], rapid.SliceOfN(rapid.Byte(), 8, 8).Draw(t, "device"))
	age := func(name string) uint32 {
		return uint32(min(f.UptimeMS, uint64(rapid.Uint32().Draw(t, name))))
	}
	n := rapid.IntRange(0, MaxRecords).Draw(t, "records")
	size := MinFrameBytes
	for range n {
		var r Record
		switch rapid.IntRange(0, 4).Draw(t, "type") {
		case 0:
			r = Record{Type: RecordSighting, Sighting: Sighting{
				Kind: IDKind(rapid.IntRange(0, 1).Draw(t, "kind")),
				ID:   rapid.SliceOfN(rapid.Byte(), MinIDLen, MaxIDLen).Draw(t, "id"),
				RSSI: rapid.Int8().Draw(t, "rssi"), Zone: rapid.Uint8().Draw(t, "zone"), AgeMS: age("age"),
			}}
		case 1:
			r = Record{Type: RecordCounter, Counter: Counter{
				Door: rapid.Uint8().Draw(t, "door"), In: rapid.Uint16().Draw(t, "in"), Out: rapid.Uint16().Draw(t, "out"), AgeMS: age("age"),
			}}
		case 2:
			r = Record{Type: RecordShelf, Shelf: Shelf{
				Shelf: rapid.Uint16().Draw(t, "shelf"), Action: ShelfAction(rapid.IntRange(0, 1).Draw(t, "action")),
				Count: rapid.Uint16Range(1, 65535).Draw(t, "count"), AgeMS: age("age"),
				SKU: string(rapid.SliceOfN(rapid.ByteRange(0x21, 0x7e), 1, MaxSKULen).Draw(t, "sku")),
			}}
		case 3:
			r = Record{Type: RecordHealth, Health: Health{
				Battery:  rapid.SampledFrom([]uint8{0, 1, 50, 100, BatteryUnknown}).Draw(t, "battery"),
				WiFiRSSI: rapid.Int8().Draw(t, "wifi"), FreeHeap: rapid.Uint32().Draw(t, "heap"),
				Firmware: string(rapid.SliceOfN(rapid.ByteRange(0x20, 0x7e), 1, MaxFirmwareLen).Draw(t, "fw")),
			}}
		case 4:
			r = Record{Type: RecordType(rapid.IntRange(0x80, 0xff).Draw(t, "ext")), Extension: rapid.SliceOfN(rapid.Byte(), 0, 255).Draw(t, "body")}
		}
		if b, err := Encode(&Frame{UptimeMS: f.UptimeMS, Records: []Record{r}}); err != nil {
			t.Fatalf("generated record: %v", err)
		} else if size+len(b)-MinFrameBytes > MaxFrameBytes {
			break
		} else {
			size += len(b) - MinFrameBytes
		}
		f.Records = append(f.Records, r)
	}
	return f
}

func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		f := genFrame(t)
		raw, err := Encode(f)
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		if len(raw) > MaxFrameBytes {
			t.Fatalf("%d bytes", len(raw))
		}
		got, err := Decode(raw)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if diff := cmp.Diff(f, got, frameOpts); diff != "" {
			t.Fatalf("(-encoded +decoded):\n%s", diff)
		}
	})
}
