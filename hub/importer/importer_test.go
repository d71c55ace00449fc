package importer

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/unico-cdp/unico/protocol"
)

func TestParseMapping(t *testing.T) {
	tests := []struct {
		in      string
		want    Mapping
		wantErr string
	}{
		{in: "e=email, p=phone ,n=trait:first_name", want: Mapping{"e": {Identifier: "email"}, "p": {Identifier: "phone"}, "n": {Trait: "first_name"}}},
		{in: "", wantErr: "map: empty"},
		{in: "n=trait:first_name", wantErr: "no column maps to an identifier"},
		{in: "e", wantErr: "want column=target"},
		{in: "e=trait:", wantErr: "empty trait name"},
		{in: "e=bad type", wantErr: "invalid identifier type"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMapping(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatal(diff)
			}
		})
	}
}

func readAll(t *testing.T, format, data string) ([]*protocol.Event, int) {
	t.Helper()
	m, err := ParseMapping("email=email,mobile=phone,card=loyalty_id,first=trait:first_name")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rd, err := NewReader(strings.NewReader(data), Options{Mapping: m, Format: format, Source: "crm.csv", DefaultCountryCode: "44", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var out []*protocol.Event
	skipped := 0
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, skipped
		}
		if errors.Is(err, ErrSkip) {
			skipped++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
}

func TestCSVAndJSONLines(t *testing.T) {
	csv := "\ufeffemail,mobile,card,first\n Ana@Example.com ,07700 900123,L1,Ana\n,,,Nobody\nbob@example.com,,,Bob\n"
	jsonl := `{"email":" Ana@Example.com ","mobile":"07700 900123","card":"L1","first":"Ana"}` + "\n\n" +
		`{"first":"Nobody"}` + "\n" + `{"email":"bob@example.com","first":"Bob"}` + "\n"
	for _, tc := range []struct{ format, data string }{{"csv", csv}, {"jsonl", jsonl}} {
		t.Run(tc.format, func(t *testing.T) {
			evs, skipped := readAll(t, tc.format, tc.data)
			if skipped != 1 || len(evs) != 2 {
				t.Fatalf("%d events, %d skipped", len(evs), skipped)
			}
			// In the order of the mapped columns: card, email, mobile.
			want := []protocol.Identifier{{Type: "loyalty_id", Value: "L1"}, {Type: "email", Value: "ana@example.com"}, {Type: "phone", Value: "+447700900123"}}
			if diff := cmp.Diff(want, evs[0].Identifiers); diff != "" {
				t.Fatal(diff)
			}
			if evs[0].Traits["first_name"] != "Ana" || evs[0].Channel != protocol.ChannelImport || !strings.HasPrefix(evs[0].ID, "imp_") {
				t.Fatalf("event: %+v", evs[0])
			}
		})
	}
	// The same records give the same ids, whatever the format.
	a, _ := readAll(t, "csv", csv)
	b, _ := readAll(t, "jsonl", jsonl)
	if a[0].ID != b[0].ID || a[1].ID != b[1].ID || a[0].ID == a[1].ID {
		t.Fatalf("ids: %s %s / %s %s", a[0].ID, a[1].ID, b[0].ID, b[1].ID)
	}
}

func TestReaderErrors(t *testing.T) {
	m, _ := ParseMapping("email=email")
	if _, err := NewReader(strings.NewReader("mail\nx\n"), Options{Mapping: m, Format: "csv"}); err == nil || !strings.Contains(err.Error(), `column "email" is not in the header`) {
		t.Fatalf("missing column: %v", err)
	}
	if _, err := NewReader(strings.NewReader(""), Options{Mapping: m, Format: "xml"}); err == nil {
		t.Fatal("unknown format accepted")
	}
	rd, _ := NewReader(strings.NewReader("{bad json\n"), Options{Mapping: m, Format: "jsonl"})
	if _, err := rd.Next(); err == nil || !strings.Contains(err.Error(), "record 1: invalid JSON") {
		t.Fatalf("bad line: %v", err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("email,first\na@b.co,Ana\n"), true)
	f.Add([]byte(`{"email":"a@b.co"}`+"\n"), false)
	m, _ := ParseMapping("email=email,first=trait:first_name")
	f.Fuzz(func(t *testing.T, data []byte, csv bool) {
		format := "jsonl"
		if csv {
			format = "csv"
		}
		rd, err := NewReader(strings.NewReader(string(data)), Options{Mapping: m, Format: format})
		if err != nil {
			return
		}
		for range 1000 {
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err == nil && (len(e.Identifiers) == 0 || e.ID == "") {
				t.Fatalf("event without identifiers or id: %+v", e)
			}
		}
	})
}
