package bridge

import (
	"encoding/binary"
	"fmt"
)

// encoder appends fields to b. When note is set it is called after every
// field with the field's name and bytes, which tests use to write annotated
// fixtures.
type encoder struct {
	b    []byte
	note func(name string, field []byte)
}

func (e *encoder) put(name string, p ...byte) {
	e.b = append(e.b, p...)
	if e.note != nil {
		e.note(name, p)
	}
}

func (e *encoder) u8(name string, v uint8) { e.put(name, v) }
func (e *encoder) u16(name string, v uint16) {
	e.put(name, binary.LittleEndian.AppendUint16(nil, v)...)
}
func (e *encoder) u32(name string, v uint32) {
	e.put(name, binary.LittleEndian.AppendUint32(nil, v)...)
}
func (e *encoder) u64(name string, v uint64) {
	e.put(name, binary.LittleEndian.AppendUint64(nil, v)...)
}

// Encode returns f as a version 1 frame. It checks what Decode checks (and
// wraps the same sentinel errors), so whatever Encode returns decodes back
// to f. Version and Type may be zero; they are written as Version and
// FrameReport.
func Encode(f *Frame) ([]byte, error) {
	e := encoder{b: make([]byte, 0, 256)}
	if err := e.frame(f); err != nil {
		return nil, err
	}
	return e.b, nil
}

func (e *encoder) frame(f *Frame) error {
	if f == nil {
		return fmt.Errorf("nil frame: %w", ErrField)
	}
	if f.Version != 0 && f.Version != Version {
		return fmt.Errorf("version %d: %w", f.Version, ErrVersion)
	}
	if f.Type != 0 && f.Type != FrameReport {
		return fmt.Errorf("frame type %d: %w", f.Type, ErrVersion)
	}
	if len(f.Records) > MaxRecords {
		return fmt.Errorf("%d records exceed %d: %w", len(f.Records), MaxRecords, ErrTooLarge)
	}
	e.put("magic \"UF\"", magic[:]...)
	e.u8("version", Version)
	e.u8("frame type: report", uint8(FrameReport))
	e.put("device id", f.DeviceID[:]...)
	e.u32(fmt.Sprintf("boot id 0x%08x", f.BootID), f.BootID)
	e.u32(fmt.Sprintf("seq %d", f.Seq), f.Seq)
	e.u64(fmt.Sprintf("uptime ms %d", f.UptimeMS), f.UptimeMS)
	e.u8(fmt.Sprintf("record count %d", len(f.Records)), uint8(len(f.Records)))
	e.u8("flags", 0)
	for i := range f.Records {
		if err := e.record(i, &f.Records[i], f.UptimeMS); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
	}
	if len(e.b)+ChecksumBytes > MaxFrameBytes {
		return fmt.Errorf("frame length %d exceeds %d: %w", len(e.b)+ChecksumBytes, MaxFrameBytes, ErrTooLarge)
	}
	e.u32("crc32c", checksum(e.b))
	return nil
}

func (e *encoder) record(i int, r *Record, uptime uint64) error {
	checkAge := func(a uint32) error {
		if uint64(a) > uptime {
			return fmt.Errorf("%s: age_ms %d exceeds frame uptime %d: %w", r.Type, a, uptime, ErrField)
		}
		return nil
	}
	head := func(n int) {
		e.u8(fmt.Sprintf("record %d type: %s", i, r.Type), uint8(r.Type))
		e.u8(fmt.Sprintf("  length %d", n), uint8(n))
	}
	switch {
	case r.Type == RecordSighting:
		s := &r.Sighting
		if s.Kind != KindMACHash && s.Kind != KindBeaconID {
			return fmt.Errorf("sighting: kind %d unknown: %w", s.Kind, ErrField)
		}
		if len(s.ID) < MinIDLen || len(s.ID) > MaxIDLen {
			return fmt.Errorf("sighting: id length %d outside %d-%d: %w", len(s.ID), MinIDLen, MaxIDLen, ErrField)
		}
		if err := checkAge(s.AgeMS); err != nil {
			return err
		}
		head(8 + len(s.ID))
		e.u8(fmt.Sprintf("  kind %d (%s)", s.Kind, s.Kind.IdentifierType()), uint8(s.Kind))
		e.u8(fmt.Sprintf("  id length %d", len(s.ID)), uint8(len(s.ID)))
		e.put("  id", s.ID...)
		e.u8(fmt.Sprintf("  rssi %d", s.RSSI), uint8(s.RSSI))
		e.u8(fmt.Sprintf("  zone %d", s.Zone), s.Zone)
		e.u32(fmt.Sprintf("  age ms %d", s.AgeMS), s.AgeMS)
	case r.Type == RecordCounter:
		c := &r.Counter
		if err := checkAge(c.AgeMS); err != nil {
			return err
		}
		head(9)
		e.u8(fmt.Sprintf("  door %d", c.Door), c.Door)
		e.u16(fmt.Sprintf("  in %d", c.In), c.In)
		e.u16(fmt.Sprintf("  out %d", c.Out), c.Out)
		e.u32(fmt.Sprintf("  age ms %d", c.AgeMS), c.AgeMS)
	case r.Type == RecordShelf:
		s := &r.Shelf
		if s.Action != ShelfPick && s.Action != ShelfPut {
			return fmt.Errorf("shelf: action %d unknown: %w", s.Action, ErrField)
		}
		if s.Count == 0 {
			return fmt.Errorf("shelf: count 0: %w", ErrField)
		}
		if len(s.SKU) < 1 || len(s.SKU) > MaxSKULen || badASCII([]byte(s.SKU), 0x21) >= 0 {
			return fmt.Errorf("shelf: sku %q: want 1-%d printable ASCII bytes without space: %w", s.SKU, MaxSKULen, ErrField)
		}
		if err := checkAge(s.AgeMS); err != nil {
			return err
		}
		head(10 + len(s.SKU))
		e.u16(fmt.Sprintf("  shelf %d", s.Shelf), s.Shelf)
		e.u8(fmt.Sprintf("  action %d", s.Action), uint8(s.Action))
		e.u16(fmt.Sprintf("  count %d", s.Count), s.Count)
		e.u32(fmt.Sprintf("  age ms %d", s.AgeMS), s.AgeMS)
		e.u8(fmt.Sprintf("  sku length %d", len(s.SKU)), uint8(len(s.SKU)))
		e.put(fmt.Sprintf("  sku %q", s.SKU), []byte(s.SKU)...)
	case r.Type == RecordHealth:
		h := &r.Health
		if h.Battery > 100 && h.Battery != BatteryUnknown {
			return fmt.Errorf("health: battery %d: %w", h.Battery, ErrField)
		}
		if len(h.Firmware) < 1 || len(h.Firmware) > MaxFirmwareLen || badASCII([]byte(h.Firmware), 0x20) >= 0 {
			return fmt.Errorf("health: firmware %q: want 1-%d printable ASCII bytes: %w", h.Firmware, MaxFirmwareLen, ErrField)
		}
		head(7 + len(h.Firmware))
		e.u8(fmt.Sprintf("  battery %d", h.Battery), h.Battery)
		e.u8(fmt.Sprintf("  wifi rssi %d", h.WiFiRSSI), uint8(h.WiFiRSSI))
		e.u32(fmt.Sprintf("  free heap %d", h.FreeHeap), h.FreeHeap)
		e.u8(fmt.Sprintf("  firmware length %d", len(h.Firmware)), uint8(len(h.Firmware)))
		e.put(fmt.Sprintf("  firmware %q", h.Firmware), []byte(h.Firmware)...)
	case r.Type >= RecordExtension:
		if len(r.Extension) > 255 {
			return fmt.Errorf("%s: length %d exceeds 255: %w", r.Type, len(r.Extension), ErrField)
		}
		head(len(r.Extension))
		e.put("  body", r.Extension...)
	default:
		return fmt.Errorf("record type 0x%02x unknown: %w", uint8(r.Type), ErrField)
	}
	return nil
}
