package bridge

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum returns the CRC-32C of b.
func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// decoder holds the state of one Decode call.
type decoder struct {
	b   []byte
	rec int // index of the record being read, -1 in the header
	// ids is a private copy of the frame that sightings' ids and extension
	// bodies point into; str is a string copy that SKUs and firmware
	// versions are cut from. Both are made on first use.
	ids []byte
	str string
}

func (d *decoder) errf(off int, field string, sentinel error, format string, args ...any) *DecodeError {
	return &DecodeError{Record: d.rec, Offset: off, Field: field, Msg: fmt.Sprintf(format, args...), Err: sentinel}
}

func (d *decoder) bytesAt(off, n int) HexBytes {
	if d.ids == nil {
		d.ids = make([]byte, len(d.b))
		copy(d.ids, d.b)
	}
	return HexBytes(d.ids[off : off+n : off+n])
}

func (d *decoder) stringAt(off, n int) string {
	if d.str == "" {
		d.str = string(d.b)
	}
	return d.str[off : off+n]
}

// Decode parses one frame strictly: every field is checked against
// FRAME.md and every error is a *DecodeError that names the record, the
// byte offset and the field, and wraps one of the sentinel errors. Decode
// never panics and does not keep b.
func Decode(b []byte) (*Frame, error) {
	d := decoder{b: b, rec: -1}
	if len(b) > MaxFrameBytes {
		return nil, d.errf(0, "frame length", ErrTooLarge, "%d exceeds %d", len(b), MaxFrameBytes)
	}
	if len(b) < 2 {
		return nil, d.errf(len(b), "magic", ErrTruncated, "needs 2 bytes, frame has %d", len(b))
	}
	if b[0] != magic[0] || b[1] != magic[1] {
		return nil, d.errf(0, "magic", ErrMagic, "0x%02x%02x is not 0x5546", b[0], b[1])
	}
	if len(b) < 3 {
		return nil, d.errf(2, "version", ErrTruncated, "missing")
	}
	if b[2] != Version {
		return nil, d.errf(2, "version", ErrVersion, "%d is not %d", b[2], Version)
	}
	if len(b) < MinFrameBytes {
		return nil, d.errf(len(b), "header", ErrTruncated, "needs %d bytes with checksum, frame has %d", MinFrameBytes, len(b))
	}
	end := len(b) - ChecksumBytes
	if got, want := binary.LittleEndian.Uint32(b[end:]), checksum(b[:end]); got != want {
		return nil, d.errf(end, "crc32c", ErrChecksum, "0x%08x, computed 0x%08x", got, want)
	}
	if FrameType(b[3]) != FrameReport {
		return nil, d.errf(3, "frame type", ErrVersion, "%d unknown", b[3])
	}
	f := &Frame{
		Version:  b[2],
		Type:     FrameType(b[3]),
		BootID:   binary.LittleEndian.Uint32(b[12:]),
		Seq:      binary.LittleEndian.Uint32(b[16:]),
		UptimeMS: binary.LittleEndian.Uint64(b[20:]),
	}
	copy(f.DeviceID[:], b[4:12])
	count := int(b[28])
	if count > MaxRecords {
		return nil, d.errf(28, "record count", ErrTooLarge, "%d exceeds %d", count, MaxRecords)
	}
	if b[29] != 0 {
		return nil, d.errf(29, "flags", ErrField, "0x%02x: reserved bits set", b[29])
	}
	if count > 0 {
		f.Records = make([]Record, count)
	}
	off := HeaderBytes
	for i := range count {
		d.rec = i
		n, err := d.record(off, end, f.UptimeMS, &f.Records[i])
		if err != nil {
			return nil, err
		}
		off += n
	}
	d.rec = -1
	if off != end {
		return nil, d.errf(off, "after last record", ErrTrailing, "%d bytes", end-off)
	}
	return f, nil
}

// record decodes the record at off (records end at end) into r and returns
// its size.
func (d *decoder) record(off, end int, uptime uint64, r *Record) (int, error) {
	b := d.b
	if end-off < 2 {
		return 0, d.errf(off, "record header", ErrTruncated, "needs 2 bytes, %d left", end-off)
	}
	t := RecordType(b[off])
	n := int(b[off+1])
	body := off + 2
	if n > end-body {
		return 0, d.errf(off+1, t.String()+": length", ErrTruncated, "%d exceeds the %d bytes left", n, end-body)
	}
	r.Type = t
	// want checks that the body length is exactly size.
	want := func(size int) error {
		if n != size {
			return d.errf(off+1, t.String()+": length", ErrField, "%d, want %d", n, size)
		}
		return nil
	}
	age := func(at int) (uint32, error) {
		a := binary.LittleEndian.Uint32(b[at:])
		if uint64(a) > uptime {
			return 0, d.errf(at, t.String()+": age_ms", ErrField, "%d exceeds frame uptime %d", a, uptime)
		}
		return a, nil
	}
	switch {
	case t == RecordSighting:
		if n < 2 {
			return 0, want(8 + MinIDLen)
		}
		s := &r.Sighting
		s.Kind = IDKind(b[body])
		if s.Kind != KindMACHash && s.Kind != KindBeaconID {
			return 0, d.errf(body, "sighting: kind", ErrField, "%d unknown", b[body])
		}
		idLen := int(b[body+1])
		if idLen < MinIDLen || idLen > MaxIDLen {
			return 0, d.errf(body+1, "sighting: id length", ErrField, "%d outside %d-%d", idLen, MinIDLen, MaxIDLen)
		}
		if err := want(8 + idLen); err != nil {
			return 0, err
		}
		s.ID = d.bytesAt(body+2, idLen)
		p := body + 2 + idLen
		s.RSSI = int8(b[p])
		s.Zone = b[p+1]
		a, err := age(p + 2)
		if err != nil {
			return 0, err
		}
		s.AgeMS = a
	case t == RecordCounter:
		if err := want(9); err != nil {
			return 0, err
		}
		c := &r.Counter
		c.Door = b[body]
		c.In = binary.LittleEndian.Uint16(b[body+1:])
		c.Out = binary.LittleEndian.Uint16(b[body+3:])
		a, err := age(body + 5)
		if err != nil {
			return 0, err
		}
		c.AgeMS = a
	case t == RecordShelf:
		if n < 10 {
			return 0, want(10 + 1)
		}
		s := &r.Shelf
		s.Shelf = binary.LittleEndian.Uint16(b[body:])
		s.Action = ShelfAction(b[body+2])
		if s.Action != ShelfPick && s.Action != ShelfPut {
			return 0, d.errf(body+2, "shelf: action", ErrField, "%d unknown", b[body+2])
		}
		s.Count = binary.LittleEndian.Uint16(b[body+3:])
		if s.Count == 0 {
			return 0, d.errf(body+3, "shelf: count", ErrField, "0, want at least 1")
		}
		a, err := age(body + 5)
		if err != nil {
			return 0, err
		}
		s.AgeMS = a
		skuLen := int(b[body+9])
		if skuLen < 1 || skuLen > MaxSKULen {
			return 0, d.errf(body+9, "shelf: sku length", ErrField, "%d outside 1-%d", skuLen, MaxSKULen)
		}
		if err := want(10 + skuLen); err != nil {
			return 0, err
		}
		if i := badASCII(b[body+10:body+10+skuLen], 0x21); i >= 0 {
			return 0, d.errf(body+10+i, "shelf: sku", ErrField, "byte 0x%02x at %d is not printable ASCII without space", b[body+10+i], i)
		}
		s.SKU = d.stringAt(body+10, skuLen)
	case t == RecordHealth:
		if n < 7 {
			return 0, want(7 + 1)
		}
		h := &r.Health
		h.Battery = b[body]
		if h.Battery > 100 && h.Battery != BatteryUnknown {
			return 0, d.errf(body, "health: battery", ErrField, "%d outside 0-100 and not %d", h.Battery, BatteryUnknown)
		}
		h.WiFiRSSI = int8(b[body+1])
		h.FreeHeap = binary.LittleEndian.Uint32(b[body+2:])
		fwLen := int(b[body+6])
		if fwLen < 1 || fwLen > MaxFirmwareLen {
			return 0, d.errf(body+6, "health: firmware length", ErrField, "%d outside 1-%d", fwLen, MaxFirmwareLen)
		}
		if err := want(7 + fwLen); err != nil {
			return 0, err
		}
		if i := badASCII(b[body+7:body+7+fwLen], 0x20); i >= 0 {
			return 0, d.errf(body+7+i, "health: firmware", ErrField, "byte 0x%02x at %d is not printable ASCII", b[body+7+i], i)
		}
		h.Firmware = d.stringAt(body+7, fwLen)
	case t >= RecordExtension:
		r.Extension = d.bytesAt(body, n)
	default:
		return 0, d.errf(off, "record type", ErrField, "0x%02x unknown", uint8(t))
	}
	return 2 + n, nil
}

// badASCII returns the index of the first byte of s outside lo..0x7E, or -1.
func badASCII(s []byte, lo byte) int {
	for i, c := range s {
		if c < lo || c > 0x7E {
			return i
		}
	}
	return -1
}
