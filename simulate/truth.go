package simulate

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/unico-cdp/unico/protocol"
)

// TruthIdentifier is one identifier of a person in the ground truth.
type TruthIdentifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
	// Shared names how the identifier is shared with other persons
	// (SharedFamilyEmail, SharedStoreCard, SharedPOSTerminal); empty when
	// it is the person's alone.
	Shared string `json:"shared,omitempty"`
}

// TruthRecord is the ground truth about one person: one line of WriteTruth.
type TruthRecord struct {
	Person string `json:"person"`
	// Identifiers are those that accepted events attached to the person,
	// normalised as the edge normalises them, sorted by type and value.
	Identifiers []TruthIdentifier `json:"identifiers"`
	// Events counts the person's messages accepted over HTTP.
	Events int64 `json:"events"`
	// PresenceEvents counts the presence events (presence.enter,
	// presence.zone_dwell, presence.exit) that the edges derive from the
	// person's PUBACKed sensor frames, when presence is sent as frames.
	PresenceEvents int64 `json:"presence_events,omitempty"`
	// Orders and Revenue count accepted "Order Completed" events.
	Orders  int64 `json:"orders"`
	Revenue Cents `json:"revenue"`
	// IdentifiedOrders and IdentifiedRevenue count the orders whose events
	// carry at least one identifier of the person that is not shared: the
	// ones a perfect identity resolution can credit to the person's
	// profile.
	IdentifiedOrders  int64 `json:"identified_orders"`
	IdentifiedRevenue Cents `json:"identified_revenue"`
	// Contacts counts accepted contact-center interactions.
	Contacts int64 `json:"contacts"`
}

type truthPerson struct {
	ids                      map[protocol.Identifier]struct{}
	events, orders, idOrders int64
	contacts, presence       int64
	revenue, idRevenue       Cents
}

// Truth accumulates the ground truth of accepted events. It is safe for
// concurrent use.
type Truth struct {
	pop     *Population
	mu      sync.Mutex
	persons []truthPerson
}

// NewTruth returns an empty ground truth for pop.
func NewTruth(pop *Population) *Truth {
	return &Truth{pop: pop, persons: make([]truthPerson, len(pop.Persons))}
}

// Record adds events that an edge accepted.
func (t *Truth) Record(metas []Meta) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range metas {
		m := &metas[i]
		if m.Person < 0 || m.Person >= len(t.persons) {
			continue
		}
		tp := &t.persons[m.Person]
		if tp.ids == nil {
			tp.ids = make(map[protocol.Identifier]struct{}, 4)
		}
		identified := false
		for _, id := range m.Identifiers() {
			tp.ids[id] = struct{}{}
			if _, shared := t.pop.shared[id]; !shared {
				identified = true
			}
		}
		tp.events++
		if m.Order {
			tp.orders++
			tp.revenue += m.Revenue
			if identified {
				tp.idOrders++
				tp.idRevenue += m.Revenue
			}
		}
		if m.Contact {
			tp.contacts++
		}
	}
}

// RecordPresence adds one presence event that an edge derives from
// PUBACKed sensor frames, carrying id, to person's truth.
func (t *Truth) RecordPresence(person int, id protocol.Identifier) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if person < 0 || person >= len(t.persons) {
		return
	}
	tp := &t.persons[person]
	if tp.ids == nil {
		tp.ids = make(map[protocol.Identifier]struct{}, 4)
	}
	tp.ids[id] = struct{}{}
	tp.presence++
}

// Records returns the ground truth of every person, in population order.
func (t *Truth) Records() []TruthRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TruthRecord, len(t.persons))
	for i := range t.persons {
		tp := &t.persons[i]
		r := TruthRecord{
			Person:      t.pop.Persons[i].Key,
			Identifiers: make([]TruthIdentifier, 0, len(tp.ids)),
			Events:      tp.events, Orders: tp.orders, Revenue: tp.revenue,
			IdentifiedOrders: tp.idOrders, IdentifiedRevenue: tp.idRevenue,
			Contacts: tp.contacts, PresenceEvents: tp.presence,
		}
		for id := range tp.ids {
			r.Identifiers = append(r.Identifiers, TruthIdentifier{Type: id.Type, Value: id.Value, Shared: t.pop.shared[id]})
		}
		slices.SortFunc(r.Identifiers, func(a, b TruthIdentifier) int {
			return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
		})
		out[i] = r
	}
	return out
}

// WriteTruth writes the ground truth as JSON Lines, one person per line.
func (t *Truth) WriteTruth(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, r := range t.Records() {
		if err := enc.Encode(&r); err != nil {
			return fmt.Errorf("write truth: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write truth: %w", err)
	}
	return nil
}

// ReadTruth reads what WriteTruth wrote.
func ReadTruth(r io.Reader) ([]TruthRecord, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var out []TruthRecord
	for {
		var rec TruthRecord
		if err := dec.Decode(&rec); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("read truth: %w", err)
		}
		out = append(out, rec)
	}
}
