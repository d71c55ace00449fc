package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

func ids(pairs ...string) []simulate.TruthIdentifier {
	var out []simulate.TruthIdentifier
	for _, p := range pairs {
		typ, val, _ := strings.Cut(p, ":")
		shared := ""
		if s, ok := strings.CutPrefix(val, "!"); ok {
			val, shared = s, simulate.SharedFamilyEmail
		}
		out = append(out, simulate.TruthIdentifier{Type: typ, Value: val, Shared: shared})
	}
	return out
}

func profile(id string, pairs ...string) hubProfile {
	p := hubProfile{ID: id}
	for _, s := range pairs {
		typ, val, _ := strings.Cut(s, ":")
		p.Identifiers = append(p.Identifiers, struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		}{typ, val})
	}
	return p
}

func TestScoreIdentity(t *testing.T) {
	// Ana and Ben share a family e-mail (marked shared) and the hub fused
	// them; Cal's web session never identified, so his anonymous id is a
	// profile of its own; Dee's phone never reached the hub.
	truth := []simulate.TruthRecord{
		{Person: "ana", Identifiers: ids("email:!fam@x", "loyalty_id:L1", "phone:+441")},
		{Person: "ben", Identifiers: ids("email:!fam@x", "loyalty_id:L2")},
		{Person: "cal", Identifiers: ids("user_id:u3", "email:cal@x", "anonymous_id:a3")},
		{Person: "dee", Identifiers: ids("user_id:u4", "phone:+444")},
	}
	profiles := []hubProfile{
		profile("p1", "email:fam@x", "loyalty_id:L1", "phone:+441", "loyalty_id:L2"),
		profile("p2", "user_id:u3", "email:cal@x"),
		profile("p3", "anonymous_id:a3"),
		profile("p4", "user_id:u4"),
	}
	got := scoreIdentity(truth, profiles)
	// True pairs: ana 1, cal 3, dee 1 = 5. Hub pairs: p1 3, p2 1 = 4.
	// Correct: ana (L1,phone) 1, cal (u3,cal@x) 1 = 2.
	want := identityScore{
		Precision: 2.0 / 4, Recall: 2.0 / 5, F1: 2 * 0.5 * 0.4 / 0.9,
		TruePairs: 5, HubPairs: 4, CorrectPairs: 2,
		Persons: 4, Profiles: 4, Identifiers: 8, IdentifiersMissing: 1,
		OverMergedProfiles: 1, UnderMergedPersons: 2,
		FusedPairsByCause:     map[string]int64{simulate.SharedFamilyEmail: 1},
		SplitFragmentsByCause: map[string]int64{"unlinked:anonymous_id": 1, "missing_at_hub": 1},
	}
	approx := cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("score (-want +got):\n%s", diff)
	}
}

func TestScoreIdentityPerfect(t *testing.T) {
	truth := []simulate.TruthRecord{
		{Person: "a", Identifiers: ids("user_id:u1", "email:a@x")},
		{Person: "b", Identifiers: ids("user_id:u2")},
	}
	got := scoreIdentity(truth, []hubProfile{profile("p1", "email:a@x", "user_id:u1"), profile("p2", "user_id:u2")})
	if got.Precision != 1 || got.Recall != 1 || got.F1 != 1 || got.OverMergedProfiles != 0 || got.UnderMergedPersons != 0 {
		t.Errorf("perfect match scored %+v", got)
	}
}

const metricsText = `# HELP unico_hub_event_latency_seconds edge accept to profile committed
# TYPE unico_hub_event_latency_seconds histogram
unico_hub_event_latency_seconds_bucket{le="0.01"} 10
unico_hub_event_latency_seconds_bucket{le="0.1"} 90
unico_hub_event_latency_seconds_bucket{le="1"} 100
unico_hub_event_latency_seconds_bucket{le="+Inf"} 100
unico_hub_event_latency_seconds_sum 12.5
unico_hub_event_latency_seconds_count 100
unico_hub_batches_total{result="ok"} 7
`

func TestHistogram(t *testing.T) {
	h, err := parseHistogram(strings.NewReader(metricsText), latencyMetric)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float64{10, 90, 100, 100}, h.counts); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	before := histogram{les: h.les, counts: []float64{10, 10, 10, 10}}
	d := h.sub(before)
	tests := []struct {
		name string
		h    histogram
		q    float64
		want float64
	}{
		{"median inside the second bucket", h, 0.5, 0.01 + 0.09*40/80},
		{"p99 in the third bucket", h, 0.99, 0.1 + 0.9*9/10},
		{"difference drops the first bucket", d, 0.5, 0.01 + 0.09*45/80},
		{"empty", histogram{}, 0.5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.quantile(tt.q); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	bin := t.TempDir()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"missing binaries", []string{"-bin", bin}, nil, "binary hub"},
		{"bad scale", nil, map[string]string{"BENCH_SCALE": "fast"}, "BENCH_SCALE"},
		{"zero scale", nil, map[string]string{"BENCH_SCALE": "0"}, "BENCH_SCALE"},
		{"unknown scenario", []string{"-scenarios", "chaos"}, nil, "unknown scenario"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestBenchSmoke builds the binaries and runs every scenario at a tiny
// scale: each must print a JSON object with real figures.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: end-to-end benchmark (runs without -short)")
	}
	bin := t.TempDir()
	out, err := exec.Command("go", "build", "-o", bin+"/", "../../cmd/hub", "../../cmd/edge-agent", "../../cmd/loadgen").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"-bin", bin, "-work-dir", t.TempDir()},
		func(k string) string { return map[string]string{"BENCH_SCALE": "0.01"}[k] }, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	figure := map[string]string{
		"edge_ingest": "events_per_s", "pipeline": "e2e_p99_ms", "drain": "drain_s", "hub_intake": "events_per_s", "identity": "f1",
		"sensor_frames": "frames_acked_per_s",
	}
	var seen []string
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var rep report
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		seen = append(seen, rep.Scenario)
		if !rep.OK || rep.Commit == "" || rep.Go == "" || rep.CPUs <= 0 || len(rep.Params) == 0 {
			t.Errorf("%s: header %+v", rep.Scenario, rep)
		}
		v, ok := rep.Results[figure[rep.Scenario]].(float64)
		if !ok || v <= 0 || math.IsNaN(v) {
			t.Errorf("%s: %s = %v, want a positive number; results %v", rep.Scenario, figure[rep.Scenario], rep.Results[figure[rep.Scenario]], rep.Results)
		}
		if rep.Scenario == "identity" {
			if r, ok := rep.Results["recall_of_linkable_pairs"].(float64); !ok || r <= 0 {
				t.Errorf("identity: recall_of_linkable_pairs = %v (evidence %v)", rep.Results["recall_of_linkable_pairs"], rep.Results["evidence"])
			}
		}
		if acc, _ := rep.Results["accepted"].(float64); acc <= 0 {
			t.Errorf("%s: accepted = %v", rep.Scenario, rep.Results["accepted"])
		}
	}
	if diff := cmp.Diff(allScenarios, seen); diff != "" {
		t.Errorf("scenarios (-want +got):\n%s", diff)
	}
	if !strings.Contains(stderr.String(), "scenario") {
		t.Errorf("no table on stderr:\n%s", stderr.String())
	}
}

func TestEvidenceRecall(t *testing.T) {
	// Ana's card and phone met in one event, her anonymous id never met
	// them; the hub linked the card and phone, so it found 1 of 1 linkable
	// pair although recall over all of Ana's pairs is 1 of 3.
	truth := []simulate.TruthRecord{{Person: "ana", Identifiers: ids("loyalty_id:L1", "phone:+441", "anonymous_id:a1", "email:!fam@x")}}
	component := map[protocol.Identifier]int{
		{Type: "loyalty_id", Value: "L1"}: 0, {Type: "phone", Value: "+441"}: 0, {Type: "anonymous_id", Value: "a1"}: 1,
	}
	profiles := []hubProfile{profile("p1", "loyalty_id:L1", "phone:+441"), profile("p2", "anonymous_id:a1")}
	linkable, found := evidenceRecall(truth, profiles, component)
	if linkable != 1 || found != 1 {
		t.Errorf("linkable, found = %d, %d; want 1, 1", linkable, found)
	}
}

func TestReplayEvidenceMatchesLoadgenTruth(t *testing.T) {
	// The replay must be the stream loadgen sends: same population, seed
	// and run id give the same ground truth.
	ev, err := replayEvidence(1, 300, 2000, "r")
	if err != nil {
		t.Fatal(err)
	}
	again, err := replayEvidence(1, 300, 2000, "r")
	if err != nil {
		t.Fatal(err)
	}
	if !sameIdentifiers(ev.records, again.records) || len(ev.component) == 0 {
		t.Errorf("replay is not deterministic or found no identifiers")
	}
	other, err := replayEvidence(2, 300, 2000, "r")
	if err != nil {
		t.Fatal(err)
	}
	if sameIdentifiers(ev.records, other.records) {
		t.Errorf("another seed gave the same truth")
	}
}
