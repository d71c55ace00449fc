// Package bridge turns compact binary frames from constrained in-store
// devices (presence scanners, people counters, smart shelves) into Unico
// events.
//
// Decode and Encode implement the version 1 frame described in FRAME.md; a
// matching allocation-free C99 encoder for firmware authors is
// c/unico_frame.h. A Bridge keeps per-device sequence state (gaps,
// duplicates, reordering, reboots) and per-identifier presence sessions, and
// emits protocol events with deterministic ids: presence.enter,
// presence.zone_dwell and presence.exit for sightings, people_counter for
// door counters and shelf.pick/shelf.put for smart shelves. It also keeps a
// bounded registry of devices for status pages and Prometheus.
package bridge

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Frame limits and layout constants. See FRAME.md.
const (
	// Version is the frame version this package reads and writes.
	Version = 1
	// MaxFrameBytes is the largest frame, checksum included.
	MaxFrameBytes = 4096
	// MaxRecords is the most records one frame may hold.
	MaxRecords = 128
	// HeaderBytes is the size of the fixed header.
	HeaderBytes = 30
	// ChecksumBytes is the size of the CRC-32C trailer.
	ChecksumBytes = 4
	// MinFrameBytes is the size of a frame without records.
	MinFrameBytes = HeaderBytes + ChecksumBytes

	// MinIDLen and MaxIDLen bound a sighting's hashed identifier.
	MinIDLen = 8
	MaxIDLen = 32
	// MaxSKULen bounds a shelf record's product id.
	MaxSKULen = 64
	// MaxFirmwareLen bounds a health record's firmware version.
	MaxFirmwareLen = 32
	// BatteryUnknown is the battery value of a mains-powered device or one
	// that cannot measure its battery.
	BatteryUnknown = 255
)

// magic is the first two bytes of every frame: "UF".
var magic = [2]byte{0x55, 0x46}

// FrameType says what a frame carries.
type FrameType uint8

// FrameReport is the only frame type of version 1: a header and records.
const FrameReport FrameType = 1

// RecordType is the first byte of a record.
type RecordType uint8

// Record types of version 1. Types from RecordExtension up are extensions
// that readers skip.
const (
	RecordSighting  RecordType = 0x01
	RecordCounter   RecordType = 0x02
	RecordShelf     RecordType = 0x03
	RecordHealth    RecordType = 0x04
	RecordExtension RecordType = 0x80
)

func (t RecordType) String() string {
	switch t {
	case RecordSighting:
		return "sighting"
	case RecordCounter:
		return "counter"
	case RecordShelf:
		return "shelf"
	case RecordHealth:
		return "health"
	}
	if t >= RecordExtension {
		return fmt.Sprintf("extension 0x%02x", uint8(t))
	}
	return fmt.Sprintf("type 0x%02x", uint8(t))
}

// IDKind says what a sighting's identifier is.
type IDKind uint8

// Identifier kinds of version 1.
const (
	// KindMACHash is a device MAC address hashed with the tenant salt by
	// the sensor.
	KindMACHash IDKind = 0
	// KindBeaconID is an id broadcast by the store's app.
	KindBeaconID IDKind = 1
)

// IdentifierType returns the protocol identifier type of k: "mac_hash" or
// "beacon_id".
func (k IDKind) IdentifierType() string {
	switch k {
	case KindMACHash:
		return "mac_hash"
	case KindBeaconID:
		return "beacon_id"
	}
	return ""
}

// ShelfAction says whether items were taken from or put on a shelf.
type ShelfAction uint8

// Shelf actions.
const (
	ShelfPick ShelfAction = 0
	ShelfPut  ShelfAction = 1
)

// DeviceID is a device's 8-byte identity. It prints and marshals as 16
// lower-case hex digits.
type DeviceID [8]byte

func (d DeviceID) String() string { return hex.EncodeToString(d[:]) }

// MarshalText implements encoding.TextMarshaler.
func (d DeviceID) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *DeviceID) UnmarshalText(b []byte) error {
	if len(b) != 16 {
		return fmt.Errorf("device id %q: want 16 hex digits", b)
	}
	_, err := hex.Decode(d[:], b)
	return err
}

// HexBytes is a byte string that marshals as lower-case hex.
type HexBytes []byte

func (h HexBytes) String() string { return hex.EncodeToString(h) }

// MarshalText implements encoding.TextMarshaler.
func (h HexBytes) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *HexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Frame is a decoded frame.
type Frame struct {
	Version  uint8     `json:"version"`
	Type     FrameType `json:"type"`
	DeviceID DeviceID  `json:"device_id"`
	// BootID is drawn at random by the device at every boot.
	BootID uint32 `json:"boot_id"`
	// Seq counts frames from 0 since boot.
	Seq uint32 `json:"seq"`
	// UptimeMS is the device's uptime when it built the frame.
	UptimeMS uint64   `json:"uptime_ms"`
	Records  []Record `json:"records"`
}

// Record is one record of a frame: the field named by Type is set, the
// others are zero. Extension records keep only their type and body.
type Record struct {
	Type     RecordType `json:"type"`
	Sighting Sighting   `json:"sighting,omitzero"`
	Counter  Counter    `json:"counter,omitzero"`
	Shelf    Shelf      `json:"shelf,omitzero"`
	Health   Health     `json:"health,omitzero"`
	// Extension is the body of an extension record.
	Extension HexBytes `json:"extension,omitempty"`
}

// Sighting is a device seen over the air.
type Sighting struct {
	Kind IDKind `json:"kind"`
	// ID is the hashed identifier, 8-32 bytes.
	ID   HexBytes `json:"id"`
	RSSI int8     `json:"rssi"`
	Zone uint8    `json:"zone"`
	// AgeMS is how long before the frame's uptime the sighting happened.
	AgeMS uint32 `json:"age_ms"`
}

// Counter is people counted at a door since the previous counter record.
type Counter struct {
	Door  uint8  `json:"door"`
	In    uint16 `json:"in"`
	Out   uint16 `json:"out"`
	AgeMS uint32 `json:"age_ms"`
}

// Shelf is items picked from or put on a smart shelf.
type Shelf struct {
	Shelf  uint16      `json:"shelf"`
	Action ShelfAction `json:"action"`
	Count  uint16      `json:"count"`
	AgeMS  uint32      `json:"age_ms"`
	SKU    string      `json:"sku"`
}

// Health is a device's own state.
type Health struct {
	// Battery is 0-100 %, or BatteryUnknown.
	Battery  uint8  `json:"battery"`
	WiFiRSSI int8   `json:"wifi_rssi"`
	FreeHeap uint32 `json:"free_heap"`
	Firmware string `json:"firmware"`
}

// Errors wrapped by *DecodeError (and by Encode's errors).
var (
	// ErrTruncated is returned when a frame ends before a field does.
	ErrTruncated = errors.New("truncated")
	// ErrTooLarge is returned when a frame exceeds MaxFrameBytes or holds
	// more than MaxRecords records.
	ErrTooLarge = errors.New("too large")
	// ErrMagic is returned when a frame does not start with "UF".
	ErrMagic = errors.New("bad magic")
	// ErrVersion is returned for a version or frame type this package does
	// not know.
	ErrVersion = errors.New("unsupported version")
	// ErrChecksum is returned when the CRC-32C does not match.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrField is returned when a field holds a value the spec forbids.
	ErrField = errors.New("invalid field")
	// ErrTrailing is returned when bytes follow the last record.
	ErrTrailing = errors.New("trailing bytes")
)

// DecodeError says what is wrong with a frame and where.
type DecodeError struct {
	// Record is the index of the offending record, or -1 for the header
	// and checksum.
	Record int
	// Offset is the byte offset of the offending field.
	Offset int
	// Field names the field, such as "sighting: id length".
	Field string
	// Msg says what is wrong, such as "40 exceeds 32".
	Msg string
	// Err is one of the sentinel errors of this package.
	Err error
}

func (e *DecodeError) Error() string {
	if e.Record >= 0 {
		return fmt.Sprintf("record %d at offset %d: %s %s", e.Record, e.Offset, e.Field, e.Msg)
	}
	return fmt.Sprintf("offset %d: %s %s", e.Offset, e.Field, e.Msg)
}

// Unwrap returns the sentinel error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Reason returns a short fixed name for err's class, for metric labels:
// "truncated", "too_large", "magic", "version", "checksum", "field",
// "trailing" or "other".
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrMagic):
		return "magic"
	case errors.Is(err, ErrVersion):
		return "version"
	case errors.Is(err, ErrChecksum):
		return "checksum"
	case errors.Is(err, ErrField):
		return "field"
	case errors.Is(err, ErrTrailing):
		return "trailing"
	}
	return "other"
}
