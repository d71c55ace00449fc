package main

import (
	"fmt"
	"time"

	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

// evidence is what the identity scenario's events allow a resolver to
// know: identifiers that belong to one person alone are linkable when a
// chain of events carries them together. Shared identifiers link nothing.
type evidence struct {
	// component maps an identifier to its connected component.
	component map[protocol.Identifier]int
	// records is the ground truth rebuilt from the same events, to check
	// that they are the ones loadgen sent.
	records []simulate.TruthRecord
}

// replayEvidence regenerates the event stream loadgen sent with the same
// population, seed, run id and count, and links the non-shared
// identifiers of each event.
func replayEvidence(seed int64, size int, events int64, runID string) (*evidence, error) {
	pop, err := simulate.NewPopulation(seed, size, simulate.PopulationOptions{CountryCode: countryCode})
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	gen, err := simulate.NewGenerator(pop, simulate.GeneratorConfig{Seed: seed, Now: time.Now, RunID: runID})
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	truth := simulate.NewTruth(pop)
	index := map[protocol.Identifier]int{}
	var parent []int
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	var scratch []byte
	metas := make([]simulate.Meta, 1)
	for range events {
		scratch = gen.AppendNext(scratch[:0], &metas[0])
		truth.Record(metas)
		first := -1
		for _, id := range metas[0].Identifiers() {
			if _, shared := pop.Shared(id); shared {
				continue
			}
			i, ok := index[id]
			if !ok {
				i = len(parent)
				index[id] = i
				parent = append(parent, i)
			}
			if first < 0 {
				first = i
				continue
			}
			if a, b := find(first), find(i); a != b {
				parent[b] = a
			}
		}
	}
	ev := &evidence{component: make(map[protocol.Identifier]int, len(index)), records: truth.Records()}
	for id, i := range index {
		ev.component[id] = find(i)
	}
	return ev, nil
}

// sameIdentifiers reports whether two ground truths name the same
// identifiers for every person.
func sameIdentifiers(a, b []simulate.TruthRecord) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Person != b[i].Person || len(a[i].Identifiers) != len(b[i].Identifiers) {
			return false
		}
		for j := range a[i].Identifiers {
			if a[i].Identifiers[j] != b[i].Identifiers[j] {
				return false
			}
		}
	}
	return true
}

// evidenceRecall counts the pairs of one person's identifiers that the
// events link (linkable) and those of them the hub put in one profile
// (found). found / linkable is the hub's recall where the data allowed a
// link at all.
func evidenceRecall(truth []simulate.TruthRecord, profiles []hubProfile, component map[protocol.Identifier]int) (linkable, found int64) {
	inProfile := map[protocol.Identifier]int{}
	for q, pr := range profiles {
		for _, x := range pr.Identifiers {
			id := protocol.Identifier{Type: x.Type, Value: x.Value}
			if _, dup := inProfile[id]; !dup {
				inProfile[id] = q
			}
		}
	}
	type key struct{ person, comp, profile int }
	perComp := map[key]int64{}
	perCell := map[key]int64{}
	for p, r := range truth {
		for _, ti := range r.Identifiers {
			if ti.Shared != "" {
				continue
			}
			id := protocol.Identifier{Type: ti.Type, Value: ti.Value}
			c, ok := component[id]
			if !ok {
				continue
			}
			perComp[key{p, c, 0}]++
			q, ok := inProfile[id]
			if !ok {
				continue
			}
			perCell[key{p, c, q}]++
		}
	}
	for _, n := range perComp {
		linkable += pairs(n)
	}
	for _, n := range perCell {
		found += pairs(n)
	}
	return linkable, found
}
