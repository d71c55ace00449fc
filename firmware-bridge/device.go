package bridge

import (
	"strings"
	"time"
)

// seqWindow is how many sequence numbers below the highest one a device's
// bitmap remembers, so that reordered frames are accepted once and
// duplicates dropped.
const seqWindow = 64

// minRebootShift is the least move of a boot's estimated start that counts
// as a reboot under a reused boot id, so that frames redelivered late by a
// reconnecting MQTT client are not mistaken for one.
const minRebootShift = 30 * time.Second

// verdict is what the sequence state says about a frame.
type verdict uint8

const (
	vAccept verdict = iota
	vDuplicate
	vStale
)

// device is the bridge's state for one device.
type device struct {
	id    DeviceID
	idStr string

	boot     uint32
	prevBoot uint32
	hasPrev  bool
	maxSeq   uint32
	// window bit i is set when seq maxSeq-i was seen.
	window uint64
	// uptime is the uptime of the frame with maxSeq.
	uptime uint64
	// bootAt estimates when the current boot began, in unix nanoseconds:
	// the lowest receive time − uptime of its accepted frames (transport
	// delay only ever makes the estimate later).
	bootAt int64

	lastSeen  time.Time
	hasHealth bool
	health    Health

	frames, gaps, duplicates, reordered, stale, reboots uint64
}

// DeviceInfo is what the bridge knows about one device, for the agent's
// status page.
type DeviceInfo struct {
	DeviceID string    `json:"device_id"`
	LastSeen time.Time `json:"last_seen"`
	BootID   uint32    `json:"boot_id"`
	// Firmware, Battery, FreeHeap and WiFiRSSI come from the last health
	// record; HasHealth is false until one arrived.
	HasHealth bool   `json:"has_health"`
	Firmware  string `json:"firmware,omitempty"`
	Battery   uint8  `json:"battery,omitempty"`
	FreeHeap  uint32 `json:"free_heap,omitempty"`
	WiFiRSSI  int8   `json:"wifi_rssi,omitempty"`
	// Frames counts accepted frames.
	Frames uint64 `json:"frames"`
	// Gaps counts frames missing when a higher seq arrived; some of them
	// may arrive later and are then also counted in Reordered.
	Gaps       uint64 `json:"gaps"`
	Duplicates uint64 `json:"duplicates"`
	Reordered  uint64 `json:"reordered"`
	// Stale counts frames dropped because they were older than the seq
	// window or came from the previous boot.
	Stale   uint64 `json:"stale"`
	Reboots uint64 `json:"reboots"`
}

func (d *device) info() DeviceInfo {
	return DeviceInfo{
		DeviceID:   d.idStr,
		LastSeen:   d.lastSeen,
		BootID:     d.boot,
		HasHealth:  d.hasHealth,
		Firmware:   d.health.Firmware,
		Battery:    d.health.Battery,
		FreeHeap:   d.health.FreeHeap,
		WiFiRSSI:   d.health.WiFiRSSI,
		Frames:     d.frames,
		Gaps:       d.gaps,
		Duplicates: d.duplicates,
		Reordered:  d.reordered,
		Stale:      d.stale,
		Reboots:    d.reboots,
	}
}

// start sets the sequence state from the first frame of a boot.
func (d *device) start(f *Frame, recv int64) {
	d.bootAt = bootEstimate(f, recv)
	d.boot = f.BootID
	d.maxSeq = f.Seq
	d.window = 1
	d.uptime = f.UptimeMS
}

func bootEstimate(f *Frame, recv int64) int64 {
	return recv - int64(min(f.UptimeMS, 1<<40))*int64(time.Millisecond)
}

func (d *device) reboot(f *Frame, recv int64) {
	d.reboots++
	d.prevBoot, d.hasPrev = d.boot, true
	// A boot's seqs start at 0: those below the first one seen are lost
	// unless they still arrive (within the window, as reordered).
	d.gaps += uint64(f.Seq)
	d.start(f, recv)
}

// check classifies f, received at recv (unix nanoseconds), against the
// device's sequence state and updates it. The rules are the table in
// FRAME.md, "Lossy links".
func (d *device) check(f *Frame, recv int64) verdict {
	if f.BootID != d.boot {
		if d.hasPrev && f.BootID == d.prevBoot {
			d.stale++
			return vStale
		}
		d.reboot(f, recv)
		return vAccept
	}
	if f.Seq > d.maxSeq {
		if f.UptimeMS < d.uptime {
			// Uptime went backwards under the same boot id: the device
			// rebooted and drew the same boot id.
			d.reboot(f, recv)
			return vAccept
		}
		d.bootAt = min(d.bootAt, bootEstimate(f, recv))
		shift := f.Seq - d.maxSeq
		d.gaps += uint64(shift - 1)
		if shift >= seqWindow {
			d.window = 0
		} else {
			d.window <<= shift
		}
		d.window |= 1
		d.maxSeq = f.Seq
		d.uptime = f.UptimeMS
		return vAccept
	}
	// An older seq under the same boot id. If the frame's boot estimate
	// is later than the boot's by half its known uptime (and at least
	// minRebootShift) or more, the device must have rebooted since (a
	// frame of this boot delayed that long is implausible) and drawn the
	// same boot id.
	if f.UptimeMS < d.uptime && bootEstimate(f, recv)-d.bootAt >= max(int64(min(d.uptime, 1<<40)/2)*int64(time.Millisecond), int64(minRebootShift)) {
		d.reboot(f, recv)
		return vAccept
	}
	diff := d.maxSeq - f.Seq
	if diff < seqWindow {
		bit := uint64(1) << diff
		if d.window&bit != 0 {
			d.duplicates++
			return vDuplicate
		}
		d.window |= bit
		d.reordered++
		return vAccept
	}
	d.stale++
	return vStale
}

// setHealth keeps h, copying the firmware string so that it does not pin
// the frame it was cut from.
func (d *device) setHealth(h Health) {
	if h.Firmware != d.health.Firmware {
		h.Firmware = strings.Clone(h.Firmware)
	} else {
		h.Firmware = d.health.Firmware
	}
	d.health = h
	d.hasHealth = true
}
