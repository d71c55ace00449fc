package bridge

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors from vectorFrames")

// vectorNames are the shared test vectors, in the order c/example.c prints
// them.
var vectorNames = []string{"empty", "sightings", "mixed", "max_records"}

var (
	dev1 = DeviceID{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}
	dev2 = DeviceID{0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x08}
)

func seqBytes(from byte, n int) HexBytes {
	b := make(HexBytes, n)
	for i := range b {
		b[i] = from + byte(i)
	}
	return b
}

// vectorFrames builds the frames c/example.c encodes. Only -update uses
// them: the test itself trusts the files.
func vectorFrames() map[string]*Frame {
	full := &Frame{Version: 1, Type: FrameReport, DeviceID: dev1, BootID: 7, Seq: 1, UptimeMS: 100000}
	for i := range MaxRecords {
		full.Records = append(full.Records, Record{Type: RecordCounter, Counter: Counter{Door: uint8(i), In: uint16(i), Out: uint16(2 * i), AgeMS: uint32(i)}})
	}
	return map[string]*Frame{
		"empty": {Version: 1, Type: FrameReport, DeviceID: dev1, BootID: 0xdeadbeef, Seq: 0, UptimeMS: 1000},
		"sightings": {Version: 1, Type: FrameReport, DeviceID: dev2, BootID: 0x12345678, Seq: 42, UptimeMS: 3600000, Records: []Record{
			{Type: RecordSighting, Sighting: Sighting{Kind: KindMACHash, ID: seqBytes(0x10, 8), RSSI: -60, Zone: 3, AgeMS: 1500}},
			{Type: RecordSighting, Sighting: Sighting{Kind: KindBeaconID, ID: seqBytes(0xb0, 16), RSSI: -72, Zone: 1, AgeMS: 0}},
			{Type: RecordSighting, Sighting: Sighting{Kind: KindMACHash, ID: seqBytes(0xe0, 32), RSSI: -91, Zone: 0, AgeMS: 250}},
		}},
		"mixed": {Version: 1, Type: FrameReport, DeviceID: dev2, BootID: 0x12345678, Seq: 43, UptimeMS: 5000000000, Records: []Record{
			{Type: RecordCounter, Counter: Counter{Door: 1, In: 5, Out: 3, AgeMS: 60000}},
			{Type: RecordShelf, Shelf: Shelf{Shelf: 12, Action: ShelfPick, Count: 2, AgeMS: 10, SKU: "SKU-12345"}},
			{Type: RecordShelf, Shelf: Shelf{Shelf: 12, Action: ShelfPut, Count: 1, AgeMS: 0, SKU: "A7"}},
			{Type: RecordHealth, Health: Health{Battery: 87, WiFiRSSI: -55, FreeHeap: 81234, Firmware: "1.4.2-rc1"}},
			{Type: 0x80, Extension: HexBytes{1, 2, 3}},
		}},
		"max_records": full,
	}
}

// annotated returns f's encoding as hex with one field per line and a
// comment naming it.
func annotated(t *testing.T, f *Frame) string {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("# Unico frame v1 test vector, written by go test -update; see FRAME.md.\n")
	e := encoder{note: func(name string, p []byte) {
		fmt.Fprintf(&sb, "%-24s # %s\n", hex.EncodeToString(p), name)
	}}
	if err := e.frame(f); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// parseHex reads hex digits, ignoring white space and "#" comments.
func parseHex(t *testing.T, s string) []byte {
	t.Helper()
	var digits strings.Builder
	for line := range strings.Lines(s) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("parse hex: %v", err)
	}
	return b
}

func readVector(t *testing.T, name string) ([]byte, *Frame) {
	t.Helper()
	dir := filepath.Join("testdata", "vectors")
	if *update {
		f := vectorFrames()[name]
		js, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".hex"), []byte(annotated(t, f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hx, err := os.ReadFile(filepath.Join(dir, name+".hex"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	return parseHex(t, string(hx)), &f
}

var frameOpts = cmpopts.EquateEmpty()

// TestVectors checks that the Go decoder reads each vector as its JSON
// says and that the Go encoder writes the same bytes.
func TestVectors(t *testing.T) {
	for _, name := range vectorNames {
		t.Run(name, func(t *testing.T) {
			raw, want := readVector(t, name)
			got, err := Decode(raw)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(want, got, frameOpts); diff != "" {
				t.Errorf("Decode mismatch (-json +decoded):\n%s", diff)
			}
			enc, err := Encode(want)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(enc, raw) {
				t.Errorf("Encode:\n got %x\nwant %x", enc, raw)
			}
		})
	}
}

// TestCEncoder builds c/example.c with the system C compiler, runs its
// error-path checks, and compares the vectors it prints with the files.
func TestCEncoder(t *testing.T) {
	compiler := ""
	for _, c := range []string{os.Getenv("CC"), "cc", "gcc", "clang"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			compiler = p
			break
		}
	}
	if compiler == "" {
		t.Skip("SKIP: no C compiler")
	}
	bin := filepath.Join(t.TempDir(), "example")
	base := []string{"-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", bin, filepath.Join("c", "example.c")}
	// Prefer a sanitized build; fall back when the toolchain lacks it.
	out, err := exec.Command(compiler, append([]string{"-fsanitize=address,undefined", "-fno-sanitize-recover=all"}, base...)...).CombinedOutput()
	if err != nil {
		t.Logf("sanitized build failed, building plain: %s", out)
		if out, err := exec.Command(compiler, base...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", compiler, err, out)
		}
	}
	if out, err := exec.Command(bin, "check").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("example check: %v\n%s", err, out)
	}
	out, err = exec.Command(bin).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("example: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("example: %v", err)
	}
	got := map[string][]byte{}
	var order []string
	for line := range strings.Lines(string(out)) {
		name, hx, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			t.Fatalf("example printed %q", line)
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatalf("example %s: %v", name, err)
		}
		got[name] = b
		order = append(order, name)
	}
	if diff := cmp.Diff(vectorNames, order); diff != "" {
		t.Errorf("vector names (-want +got):\n%s", diff)
	}
	for _, name := range vectorNames {
		raw, _ := readVector(t, name)
		if !bytes.Equal(got[name], raw) {
			t.Errorf("%s: C encoder wrote\n%x\nwant\n%x", name, got[name], raw)
		}
	}
}
