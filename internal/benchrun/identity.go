package main

import (
	"cmp"
	"slices"
	"strings"

	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

// identityScore compares the hub's profiles with loadgen's ground truth,
// pairwise over the identifiers that belong to one person alone.
type identityScore struct {
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	// TruePairs are pairs of scored identifiers of one person; HubPairs
	// pairs in one hub profile; CorrectPairs pairs in both.
	TruePairs    int64 `json:"true_pairs"`
	HubPairs     int64 `json:"hub_pairs"`
	CorrectPairs int64 `json:"correct_pairs"`
	// Persons with at least one scored identifier, and hub profiles.
	Persons  int `json:"persons"`
	Profiles int `json:"profiles"`
	// Identifiers scored; missing at the hub; ambiguous (in the truth of
	// several persons without being marked shared, so left out).
	Identifiers          int `json:"identifiers"`
	IdentifiersMissing   int `json:"identifiers_missing"`
	IdentifiersAmbiguous int `json:"identifiers_ambiguous"`
	// OverMergedProfiles hold identifiers of more than one person;
	// UnderMergedPersons have identifiers in more than one profile.
	OverMergedProfiles int `json:"over_merged_profiles"`
	UnderMergedPersons int `json:"under_merged_persons"`
	// FusedPairsByCause counts pairs of persons sharing a hub profile by
	// the shared identifier kind both used in the truth (family_email,
	// store_generic_card, pos_terminal), or no_shared_identifier.
	FusedPairsByCause map[string]int64 `json:"fused_person_pairs_by_cause"`
	// SplitFragmentsByCause counts the pieces of under-merged persons
	// outside their largest piece: in_another_persons_profile,
	// missing_at_hub, or unlinked:<identifier types of the piece>.
	SplitFragmentsByCause map[string]int64 `json:"split_fragments_by_cause"`
}

func pairs(n int64) int64 { return n * (n - 1) / 2 }

// scoreIdentity scores profiles against truth.
func scoreIdentity(truth []simulate.TruthRecord, profiles []hubProfile) identityScore {
	const ambiguous = -1
	owner := map[protocol.Identifier]int{}
	sharedOf := make([]map[protocol.Identifier]string, len(truth))
	for p, r := range truth {
		for _, ti := range r.Identifiers {
			id := protocol.Identifier{Type: ti.Type, Value: ti.Value}
			if ti.Shared != "" {
				if sharedOf[p] == nil {
					sharedOf[p] = map[protocol.Identifier]string{}
				}
				sharedOf[p][id] = ti.Shared
				continue
			}
			if o, seen := owner[id]; seen && o != p {
				owner[id] = ambiguous
				continue
			}
			owner[id] = p
		}
	}
	var sc identityScore
	inProfile := map[protocol.Identifier]int{}
	for q, pr := range profiles {
		for _, x := range pr.Identifiers {
			id := protocol.Identifier{Type: x.Type, Value: x.Value}
			if _, dup := inProfile[id]; !dup {
				inProfile[id] = q
			}
		}
	}
	sc.Profiles = len(profiles)

	// Contingency table of person × profile; an identifier missing at the
	// hub is a profile of its own (key below zero).
	type cellKey struct{ person, profile int }
	cells := map[cellKey]int64{}
	perPerson := map[int]int64{}
	perProfile := map[int]int64{}
	personProfiles := map[int]map[int]bool{}
	profilePersons := map[int]map[int]bool{}
	fragTypes := map[cellKey][]string{}
	missing := 0
	for id, p := range owner {
		if p == ambiguous {
			sc.IdentifiersAmbiguous++
			continue
		}
		sc.Identifiers++
		q, ok := inProfile[id]
		if !ok {
			missing++
			q = -missing
		}
		k := cellKey{p, q}
		cells[k]++
		fragTypes[k] = append(fragTypes[k], id.Type)
		perPerson[p]++
		perProfile[q]++
		if personProfiles[p] == nil {
			personProfiles[p] = map[int]bool{}
		}
		personProfiles[p][q] = true
		if profilePersons[q] == nil {
			profilePersons[q] = map[int]bool{}
		}
		profilePersons[q][p] = true
	}
	sc.IdentifiersMissing = missing
	sc.Persons = len(perPerson)
	for _, n := range cells {
		sc.CorrectPairs += pairs(n)
	}
	for _, n := range perPerson {
		sc.TruePairs += pairs(n)
	}
	for _, n := range perProfile {
		sc.HubPairs += pairs(n)
	}
	sc.Precision, sc.Recall = 1, 1
	if sc.HubPairs > 0 {
		sc.Precision = float64(sc.CorrectPairs) / float64(sc.HubPairs)
	}
	if sc.TruePairs > 0 {
		sc.Recall = float64(sc.CorrectPairs) / float64(sc.TruePairs)
	}
	if sc.Precision+sc.Recall > 0 {
		sc.F1 = 2 * sc.Precision * sc.Recall / (sc.Precision + sc.Recall)
	}

	sc.FusedPairsByCause = map[string]int64{}
	for _, ps := range profilePersons {
		if len(ps) < 2 {
			continue
		}
		sc.OverMergedProfiles++
		members := make([]int, 0, len(ps))
		for p := range ps {
			members = append(members, p)
		}
		slices.Sort(members)
		for i, a := range members {
			for _, b := range members[i+1:] {
				sc.FusedPairsByCause[fusionCause(sharedOf[a], sharedOf[b])]++
			}
		}
	}

	sc.SplitFragmentsByCause = map[string]int64{}
	held := func(k cellKey) int {
		if k.profile >= 0 {
			return 1
		}
		return 0
	}
	for p, qs := range personProfiles {
		if len(qs) < 2 {
			continue
		}
		sc.UnderMergedPersons++
		frags := make([]cellKey, 0, len(qs))
		for q := range qs {
			frags = append(frags, cellKey{p, q})
		}
		// The largest piece is the person's profile; the others are split
		// off. Ties go to a profile the hub holds, then to the lowest
		// profile index, for a stable answer.
		slices.SortFunc(frags, func(x, y cellKey) int {
			return cmp.Or(cmp.Compare(cells[y], cells[x]), cmp.Compare(held(y), held(x)), cmp.Compare(x.profile, y.profile))
		})
		for _, k := range frags[1:] {
			switch {
			case k.profile < 0:
				sc.SplitFragmentsByCause["missing_at_hub"]++
			case len(profilePersons[k.profile]) > 1:
				sc.SplitFragmentsByCause["in_another_persons_profile"]++
			default:
				ts := slices.Compact(slices.Sorted(slices.Values(fragTypes[k])))
				sc.SplitFragmentsByCause["unlinked:"+strings.Join(ts, "+")]++
			}
		}
	}
	return sc
}

// fusionCause names the shared identifier kind two persons both used, in
// order of how often it fuses people in practice.
func fusionCause(a, b map[protocol.Identifier]string) string {
	found := map[string]bool{}
	for id, kind := range a {
		if _, ok := b[id]; ok {
			found[kind] = true
		}
	}
	for _, kind := range []string{simulate.SharedFamilyEmail, simulate.SharedStoreCard, simulate.SharedPOSTerminal} {
		if found[kind] {
			return kind
		}
	}
	return "no_shared_identifier"
}

// withoutTypes returns truth without the identifiers of the given types.
func withoutTypes(truth []simulate.TruthRecord, types ...string) []simulate.TruthRecord {
	out := make([]simulate.TruthRecord, len(truth))
	for i, r := range truth {
		out[i] = r
		out[i].Identifiers = slices.DeleteFunc(slices.Clone(r.Identifiers), func(x simulate.TruthIdentifier) bool {
			return slices.Contains(types, x.Type)
		})
	}
	return out
}
