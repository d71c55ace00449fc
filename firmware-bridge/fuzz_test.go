package bridge

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// FuzzDecode checks that Decode never panics, that every error is a
// *DecodeError, that whatever decodes re-encodes to the same bytes, and
// that the bridge ingests it without trouble.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "vectors", "*.hex"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(parseHexF(f, string(b)))
	}
	f.Add(sealed(header(4), sightingRec, counterRec, shelfRec, healthRec))
	f.Add(sealed(header(2), []byte{0xfe, 0x02, 0xaa, 0xbb}, counterRec))
	f.Add([]byte("UF"))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkFrame(t, in)
		// Random bytes almost never carry a valid checksum; fix it so that
		// the fuzzer also explores the record decoders and the bridge.
		if len(in) >= MinFrameBytes {
			fixed := slices.Clone(in)
			end := len(fixed) - ChecksumBytes
			binary.LittleEndian.PutUint32(fixed[end:], checksum(fixed[:end]))
			checkFrame(t, fixed)
		}
	})
}

func checkFrame(t *testing.T, in []byte) {
	fr, err := Decode(in)
	if err != nil {
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("error %T %v is not a *DecodeError", err, err)
		}
		if fr != nil {
			t.Fatal("frame with error")
		}
		return
	}
	out, err := Encode(fr)
	if err != nil {
		t.Fatalf("Encode of a decoded frame: %v", err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("round trip:\n in %x\nout %x", in, out)
	}
	b, err := NewBridge(Config{MaxTracked: 16, MinDwell: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	seen := map[string]bool{}
	unique := func(evs []protocol.Event) {
		for _, e := range evs {
			if seen[e.ID] {
				t.Fatalf("event id %s twice", e.ID)
			}
			seen[e.ID] = true
		}
	}
	for i := range 3 { // the same frame again is a duplicate
		evs, err := b.Ingest(fr, now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		unique(evs)
	}
	unique(b.Tick(now.Add(time.Hour)))
	if b.Stats().Tracked != 0 {
		t.Fatal("sessions left after the exit timeout")
	}
}

func parseHexF(f *testing.F, s string) []byte {
	var digits strings.Builder
	for line := range strings.Lines(s) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		f.Fatal(err)
	}
	return b
}
