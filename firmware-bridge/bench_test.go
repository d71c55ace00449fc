package bridge

import (
	"encoding/binary"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// benchFrames returns n encoded frames from one device, each with recs
// sightings drawn from population identifiers over 8 zones.
func benchFrames(b *testing.B, n, recs, population int) [][]byte {
	b.Helper()
	out := make([][]byte, n)
	k := 0
	for i := range out {
		f := &Frame{DeviceID: dev1, BootID: 1, UptimeMS: 1 << 32}
		for range recs {
			id := make(HexBytes, 16)
			binary.LittleEndian.PutUint64(id, uint64(k%population)*0x9e3779b97f4a7c15)
			f.Records = append(f.Records, sight(id, -60, uint8((k/997)%8), uint32(k%1000)))
			k++
		}
		raw, err := Encode(f)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = raw
	}
	return out
}

// reseal sets the seq of the frame in buf and recomputes its checksum, so
// that a benchmark can replay a few frames as an endless stream.
func reseal(buf []byte, seq uint32) {
	binary.LittleEndian.PutUint32(buf[16:], seq)
	end := len(buf) - ChecksumBytes
	binary.LittleEndian.PutUint32(buf[end:], checksum(buf[:end]))
}

func BenchmarkDecode(b *testing.B) {
	for _, recs := range []int{1, 32, 96} {
		b.Run("sightings="+strconv.Itoa(recs), func(b *testing.B) {
			raw := benchFrames(b, 1, recs, 1000)[0]
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(raw); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkHandleMessage decodes and sessionises a stream of frames of 32
// sightings from a population of 5,000 identifiers on one goroutine, with a
// Tick every 100 frames; the device's clock and the receive time advance
// 100 ms per frame.
func BenchmarkHandleMessage(b *testing.B) {
	frames := benchFrames(b, 256, 32, 5000)
	br, err := NewBridge(Config{ZoneMap: map[uint8]string{1: "a", 2: "b"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, MaxFrameBytes)
	start := time.Unix(1_700_000_000, 0)
	var seq uint32
	events := 0
	b.ReportAllocs()
	for b.Loop() {
		buf = append(buf[:0], frames[seq%uint32(len(frames))]...)
		reseal(buf, seq)
		now := start.Add(time.Duration(seq) * 100 * time.Millisecond)
		evs, err := br.HandleMessage(buf, now)
		if err != nil {
			b.Fatal(err)
		}
		events += len(evs)
		if seq%100 == 0 {
			events += len(br.Tick(now))
		}
		seq++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(b.N*32)/b.Elapsed().Seconds(), "sightings/s")
	b.ReportMetric(float64(events)/float64(b.N), "events/frame")
}

// BenchmarkTrackedMemory reports the heap held per tracked identifier
// after 100,000 distinct identifiers (16-byte hashes) opened sessions.
func BenchmarkTrackedMemory(b *testing.B) {
	const ids = 100_000
	for b.Loop() {
		br, err := NewBridge(Config{MaxTracked: 2 * ids, MaxDevices: 10}, nil)
		if err != nil {
			b.Fatal(err)
		}
		now := time.Unix(1_700_000_000, 0)
		f := &Frame{DeviceID: dev1, BootID: 1, UptimeMS: 1 << 32, Records: make([]Record, 100)}
		for i := range f.Records {
			f.Records[i] = sight(make(HexBytes, 16), -60, 1, 0)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range ids / 100 {
			f.Seq = uint32(i)
			for j := range f.Records {
				binary.LittleEndian.PutUint64(f.Records[j].Sighting.ID, uint64(i*100+j)*0x9e3779b97f4a7c15)
			}
			if _, err := br.Ingest(f, now); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if n := br.Stats().Tracked; n != ids {
			b.Fatalf("tracked %d, want %d", n, ids)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/ids, "bytes/identifier")
		runtime.KeepAlive(br)
	}
}
