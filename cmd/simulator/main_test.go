package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

// newEdge starts an edge stand-in that decodes every batch with the real
// mapper and answers 400 when it fails, as the edge agent does.
func newEdge(t *testing.T, cc string, status int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	mp, err := protocol.NewMapper(protocol.MapOptions{DefaultCountryCode: cc})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		evs, err := mp.Decode(protocol.EndpointBatch, body, nil)
		if err != nil || status != http.StatusOK {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		n.Add(int64(len(evs)))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestRunBinary(t *testing.T) {
	a, na := newEdge(t, "39", http.StatusOK)
	b, nb := newEdge(t, "39", http.StatusOK)
	truthFile := filepath.Join(t.TempDir(), "truth.jsonl")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--edge", a.URL + "," + b.URL, "--rate", "0", "--events", "2000",
		"--population", "300", "--stores", "4", "--country-code", "39", "--batch", "50", "--seed", "3",
		"--truth", truthFile, "--quiet"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	var sum simulate.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary %q: %v", stdout.String(), err)
	}
	if sum.Accepted != 2000 || sum.Rejected != 0 || na.Load()+nb.Load() != 2000 || na.Load() == 0 || nb.Load() == 0 {
		t.Errorf("summary %+v; edges got %d and %d", sum, na.Load(), nb.Load())
	}
	f, err := os.Open(truthFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := simulate.ReadTruth(f)
	if err != nil {
		t.Fatal(err)
	}
	var events int64
	for _, r := range recs {
		events += r.Events
	}
	if len(recs) != 300 || events != 2000 {
		t.Errorf("truth: %d persons, %d events", len(recs), events)
	}
}

func TestRunExitCodes(t *testing.T) {
	bad, _ := newEdge(t, "44", http.StatusBadRequest)
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"help", []string{"--help"}, 0},
		{"unknown flag", []string{"--nope"}, 2},
		{"bad edge", []string{"--edge", "127.0.0.1:8080"}, 2},
		{"negative rate", []string{"--rate", "-1"}, 2},
		{"bad mix", []string{"--mix", "shop=1"}, 2},
		{"bad country code", []string{"--country-code", "+44"}, 2},
		{"missing baskets", []string{"--baskets", "/nonexistent.csv"}, 2},
		{"edge answers 400", []string{"--edge", bad.URL, "--rate", "0", "--events", "100", "--quiet"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := run(t.Context(), tt.args, &stdout, &stderr); got != tt.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", got, tt.want, stderr.String())
			}
		})
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &stderr); err == nil {
		t.Fatal("--help: no error")
	}
	for _, f := range []string{"edge", "write-key", "rate", "duration", "events", "population", "stores", "seed", "batch",
		"concurrency", "baskets", "truth", "country-code", "mix", "run-id", "progress", "quiet"} {
		if !strings.Contains(stderr.String(), "-"+f+" ") && !strings.Contains(stderr.String(), "-"+f+"\n") {
			t.Errorf("--help does not document --%s", f)
		}
	}
}
