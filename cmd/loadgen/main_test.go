package main

import (
	"bytes"
	"encoding/json"
	"github.com/unico-cdp/unico/internal/trafficcli"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

// newEdge starts an edge stand-in that decodes every batch with the real
// mapper and answers 400 when that fails, as the edge agent does.
func newEdge(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	mp, err := protocol.NewMapper(protocol.MapOptions{DefaultCountryCode: "44"})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		evs, err := mp.Decode(protocol.EndpointBatch, body, nil)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		n.Add(int64(len(evs)))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestRunEvents(t *testing.T) {
	a, na := newEdge(t)
	b, nb := newEdge(t)
	truthFile := filepath.Join(t.TempDir(), "truth.jsonl")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--edge", a.URL, "--edge", b.URL, "--events", "3000",
		"--population", "200", "--stores", "4", "--batch", "50", "--truth", truthFile, "--quiet"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	var sum trafficcli.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary %q: %v", stdout.String(), err)
	}
	got := []int64{sum.Accepted, sum.Rejected, na.Load() + nb.Load()}
	if diff := cmp.Diff([]int64{3000, 0, 3000}, got); diff != "" {
		t.Errorf("accepted, rejected, received (-want +got):\n%s", diff)
	}
	if na.Load() == 0 || nb.Load() == 0 || sum.CPUSeconds <= 0 || sum.Rate <= 0 {
		t.Errorf("edges got %d and %d; summary %+v", na.Load(), nb.Load(), sum)
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
	if len(recs) != 200 || events != 3000 {
		t.Errorf("truth: %d persons, %d events; want 200 and 3000", len(recs), events)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--duration", "0"},
		{"--rate", "-1"},
		{"--edge", "127.0.0.1:8080"},
		{"--batch", "0"},
		{"--population", "0"},
		{"extra"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2; stderr %s", code, stderr.String())
			}
		})
	}
}
