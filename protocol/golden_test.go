package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the want files of golden tests")

// goldenNow is the fixed clock of golden tests.
var goldenNow = time.Date(2026, 1, 2, 3, 4, 5, 678000000, time.UTC)

// generatedID replaces ids made by the mapper's IDGen in golden output: the
// random part differs on every run.
const generatedID = "<generated>"

// goldenOptions are the per-case overrides read from options.json.
type goldenOptions struct {
	DefaultChannel     *string          `json:"default_channel"`
	DefaultCountryCode *string          `json:"default_country_code"`
	Rules              []IdentifierRule `json:"rules"`
	MaxMessageBytes    int              `json:"max_message_bytes"`
	MaxBatchBytes      int              `json:"max_batch_bytes"`
}

// goldenMapper returns the mapper golden cases run with: a fixed clock,
// a fixed source, channel "pos" and country code "39" unless the case
// overrides them.
func goldenMapper(t testing.TB, dir string) *Mapper {
	t.Helper()
	now := func() time.Time { return goldenNow }
	opts := MapOptions{
		Source:             Source{Tenant: "acme", Site: "store-12", Edge: "edge-1"},
		DefaultChannel:     ChannelPOS,
		DefaultCountryCode: "39",
		IDs:                NewIDGen(now),
		Now:                now,
	}
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "options.json"))
		if err == nil {
			var o goldenOptions
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&o); err != nil {
				t.Fatalf("options.json: %v", err)
			}
			if o.DefaultChannel != nil {
				opts.DefaultChannel = *o.DefaultChannel
			}
			if o.DefaultCountryCode != nil {
				opts.DefaultCountryCode = *o.DefaultCountryCode
			}
			opts.Rules = o.Rules
			opts.MaxMessageBytes = o.MaxMessageBytes
			opts.MaxBatchBytes = o.MaxBatchBytes
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	m, err := NewMapper(opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// goldenCase is one folder of testdata/segment.
type goldenCase struct {
	name     string
	dir      string
	endpoint Endpoint
	input    []byte
}

func goldenCases(t testing.TB) []goldenCase {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "segment", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no golden cases in testdata/segment")
	}
	var cases []goldenCase
	for _, dir := range dirs {
		ep, err := os.ReadFile(filepath.Join(dir, "endpoint"))
		if err != nil {
			t.Fatal(err)
		}
		in, err := os.ReadFile(filepath.Join(dir, "input.json"))
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, goldenCase{name: filepath.Base(dir), dir: dir, endpoint: Endpoint(strings.TrimSpace(string(ep))), input: in})
	}
	return cases
}

// formatValidationError renders err for want_error.txt: the Error() text,
// the TooLarge flag and every field error, one a line.
func formatValidationError(err error) string {
	var b strings.Builder
	b.WriteString(err.Error())
	b.WriteByte('\n')
	var verr *ValidationError
	if !errors.As(err, &verr) {
		b.WriteString("(not a *ValidationError)\n")
		return b.String()
	}
	fmt.Fprintf(&b, "too large: %t\n", verr.TooLarge)
	for _, fe := range verr.Errors {
		b.WriteString(fe.Error())
		b.WriteByte('\n')
	}
	return b.String()
}

// blankGeneratedIDs replaces generated event ids by generatedID after
// checking that they are IDGen ids stamped with the mapper's clock.
func blankGeneratedIDs(t *testing.T, input []byte, evs []Event) {
	t.Helper()
	if bytes.Contains(input, []byte(`"messageId"`)) {
		return
	}
	for i := range evs {
		if len(evs[i].ID) != IDLen {
			t.Fatalf("event %d: generated id %q is %d chars, want %d", i, evs[i].ID, len(evs[i].ID), IDLen)
		}
		if ts, ok := IDTime(evs[i].ID); !ok || !ts.Equal(goldenNow.Truncate(time.Millisecond)) {
			t.Fatalf("event %d: IDTime(%q) = %v, %t; want %v", i, evs[i].ID, ts, ok, goldenNow)
		}
		evs[i].ID = generatedID
	}
}

func TestSegmentGolden(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			m := goldenMapper(t, tc.dir)
			evs, err := m.Decode(tc.endpoint, tc.input, nil)
			wantJSON := filepath.Join(tc.dir, "want.json")
			wantErr := filepath.Join(tc.dir, "want_error.txt")
			var got []byte
			var file string
			if err != nil {
				if len(evs) != 0 {
					t.Errorf("Decode returned %d events with an error", len(evs))
				}
				var verr *ValidationError
				if !errors.As(err, &verr) {
					t.Errorf("error %T is not a *ValidationError", err)
				}
				got, file = []byte(formatValidationError(err)), wantErr
			} else {
				blankGeneratedIDs(t, tc.input, evs)
				got, err = json.MarshalIndent(evs, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, '\n')
				file = wantJSON
			}
			if *update {
				os.Remove(wantJSON)
				os.Remove(wantErr)
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", filepath.Base(file), diff)
			}
		})
	}
}
