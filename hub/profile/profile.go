// Package profile is the hub's model of one unified customer profile: its
// identifiers, traits with lineage, consent per purpose and computed traits.
//
// Every update is a merge of commutative, associative summaries: applying an
// event is merging the event's own summary into the profile, and merging two
// profiles combines their summaries. Last-write-wins values are ordered by
// (occurred-at, event id), counters add, first/last times take min/max. So a
// profile's content depends only on the set of events it holds, never on the
// order in which they arrived — the property the identity tests check.
package profile

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// Stamp orders last-write-wins values: later OccurredAt wins, ties broken by
// the larger event id, so every replica picks the same winner.
type Stamp struct {
	At      time.Time `msgpack:"at" json:"at"`
	EventID string    `msgpack:"ev" json:"event_id"`
}

// After reports whether s wins over o.
func (s Stamp) After(o Stamp) bool {
	if c := s.At.Compare(o.At); c != 0 {
		return c > 0
	}
	return s.EventID > o.EventID
}

// Trait is one trait value with its lineage: which event, channel and site
// set it, and when.
type Trait struct {
	Value   any    `msgpack:"v" json:"value"`
	Channel string `msgpack:"ch,omitempty" json:"channel,omitempty"`
	Site    string `msgpack:"si,omitempty" json:"site,omitempty"`
	Stamp
}

// Consent is the latest decision for one purpose, with its lineage.
type Consent struct {
	Granted bool   `msgpack:"g" json:"granted"`
	Channel string `msgpack:"ch,omitempty" json:"channel,omitempty"`
	Stamp
}

// Contact is a contact-center interaction.
type Contact struct {
	Reason  string `msgpack:"r,omitempty" json:"reason,omitempty"`
	Channel string `msgpack:"ch,omitempty" json:"channel,omitempty"`
	Stamp
}

// Computed holds the traits kept current on every event.
type Computed struct {
	FirstSeen      time.Time `msgpack:"fs" json:"first_seen"`
	LastSeen       time.Time `msgpack:"ls" json:"last_seen"`
	Events         int64     `msgpack:"ev" json:"events"`
	Orders         int64     `msgpack:"or" json:"orders"`
	Revenue        Money     `msgpack:"rv" json:"revenue"`
	LastPurchaseAt time.Time `msgpack:"lp,omitempty" json:"last_purchase_at,omitzero"`
	SiteVisits     Counts    `msgpack:"sv,omitempty" json:"site_visits,omitempty"`
	// Edges counts the profile's events per edge that captured them; it
	// decides which edges hold the profile's snapshot.
	Edges       Counts   `msgpack:"ed,omitempty" json:"edges,omitempty"`
	Channels    Counts   `msgpack:"ch,omitempty" json:"channels,omitempty"`
	LastContact *Contact `msgpack:"lc,omitempty" json:"last_contact,omitempty"`
	// Purchases are the most recent products bought (at most
	// MaxRecentPurchases), newest first: what next-best offers start from
	// without reading the timeline.
	Purchases []Purchase `msgpack:"pu,omitempty" json:"recent_purchases,omitempty"`
}

// Purchase is one product bought in an order.
type Purchase struct {
	Product string    `msgpack:"p" json:"product"`
	Name    string    `msgpack:"n,omitempty" json:"name,omitempty"`
	At      time.Time `msgpack:"at" json:"at"`
}

// MaxRecentPurchases bounds Computed.Purchases.
const MaxRecentPurchases = 50

// addPurchases merges b into a: newest first, duplicates (same product and
// time) once, at most MaxRecentPurchases. The result depends only on the
// union, so merging is order-independent. a is normally the result of an
// earlier merge, sorted and without duplicates: then the two are merged
// in one pass instead of sorting the whole list for every order.
func addPurchases(a, b []Purchase) []Purchase {
	if len(b) == 0 {
		return a
	}
	b = slices.Clone(b)
	slices.SortFunc(b, comparePurchases)
	if !slices.IsSortedFunc(a, comparePurchases) {
		a = slices.Clone(a)
		slices.SortFunc(a, comparePurchases)
	}
	out := make([]Purchase, 0, min(len(a)+len(b), MaxRecentPurchases))
	i, j := 0, 0
	for len(out) < MaxRecentPurchases && (i < len(a) || j < len(b)) {
		var next Purchase
		if j >= len(b) || (i < len(a) && comparePurchases(a[i], b[j]) <= 0) {
			next, i = a[i], i+1
		} else {
			next, j = b[j], j+1
		}
		if k := len(out) - 1; k >= 0 && out[k].Product == next.Product && out[k].At.Equal(next.At) {
			continue
		}
		out = append(out, next)
	}
	return out
}

// comparePurchases orders purchases newest first, then by product and
// name.
func comparePurchases(x, y Purchase) int {
	if c := y.At.Compare(x.At); c != 0 {
		return c
	}
	if c := cmp.Compare(x.Product, y.Product); c != 0 {
		return c
	}
	return cmp.Compare(x.Name, y.Name)
}

// orderProducts returns the products of an order event: the entries of
// properties.products (product_id, else sku), or the event's own product_id
// or sku.
func orderProducts(e *protocol.Event) []Purchase {
	id := func(m map[string]any) string {
		for _, k := range [...]string{"product_id", "sku"} {
			switch v := m[k].(type) {
			case string:
				if v != "" {
					return v
				}
			case int64:
				return strconv.FormatInt(v, 10)
			case float64:
				return strconv.FormatFloat(v, 'f', -1, 64)
			}
		}
		return ""
	}
	var out []Purchase
	if list, ok := e.Properties["products"].([]any); ok {
		for _, it := range list {
			if m, ok := it.(map[string]any); ok {
				if p := id(m); p != "" {
					name, _ := m["name"].(string)
					out = append(out, Purchase{Product: p, Name: name, At: e.OccurredAt})
				}
			}
		}
	} else if p := id(e.Properties); p != "" {
		name, _ := e.Properties["name"].(string)
		out = append(out, Purchase{Product: p, Name: name, At: e.OccurredAt})
	}
	return out
}

// Profile is one unified customer.
type Profile struct {
	ID          string                `msgpack:"id" json:"id"`
	Identifiers []protocol.Identifier `msgpack:"ids" json:"identifiers"`
	Traits      map[string]Trait      `msgpack:"tr,omitempty" json:"traits"`
	Consent     map[string]Consent    `msgpack:"cs,omitempty" json:"consent"`
	Computed    Computed              `msgpack:"cp" json:"computed"`
	CreatedAt   time.Time             `msgpack:"ca" json:"created_at"`
	UpdatedAt   time.Time             `msgpack:"ua" json:"updated_at"`
}

// Rules says which events mean what. Zero fields take the defaults.
type Rules struct {
	// OrderEvents are track event names that are purchases. Default
	// "Order Completed", "Purchase", "pos.sale", "Checkout Completed".
	OrderEvents []string
	// RevenueProperties are tried in order for an order's value. Default
	// "revenue", "total", "value".
	RevenueProperties []string
	// ContactEvents are track event names (or prefixes ending in "*") of
	// contact-center interactions. Default "contact.*", "Call *",
	// "Chat *"; any event on the contact_center channel counts too.
	ContactEvents []string
	// VisitEvents are event names (prefixes with "*") that count as a
	// visit to the event's site, besides orders. Default "presence.enter",
	// "Store Visit".
	VisitEvents []string
}

// DefaultRules returns the default Rules.
func DefaultRules() Rules {
	return Rules{}.withDefaults()
}

func (r Rules) withDefaults() Rules {
	if len(r.OrderEvents) == 0 {
		r.OrderEvents = []string{"Order Completed", "Purchase", "pos.sale", "Checkout Completed"}
	}
	if len(r.RevenueProperties) == 0 {
		r.RevenueProperties = []string{"revenue", "total", "value"}
	}
	if len(r.ContactEvents) == 0 {
		r.ContactEvents = []string{"contact.*", "Call *", "Chat *"}
	}
	if len(r.VisitEvents) == 0 {
		r.VisitEvents = []string{"presence.enter", "Store Visit"}
	}
	return r
}

func matchAny(pats []string, name string) bool {
	for _, p := range pats {
		if strings.HasSuffix(p, "*") {
			if strings.HasPrefix(name, p[:len(p)-1]) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}

// Classifier applies Rules to events.
type Classifier struct{ r Rules }

// NewClassifier returns a classifier for r (defaults applied).
func NewClassifier(r Rules) *Classifier { return &Classifier{r: r.withDefaults()} }

// isOrder and isContact say which events are orders and contacts.
func (c *Classifier) isOrder(typ, name string) bool {
	return typ == protocol.TypeTrack && matchAny(c.r.OrderEvents, name)
}

func (c *Classifier) isContact(typ, name, channel string) bool {
	return channel == protocol.ChannelContactCenter || (typ == protocol.TypeTrack && matchAny(c.r.ContactEvents, name))
}

// ReadsProperties reports whether Apply reads the properties of an event
// of this type, name and channel: those of orders and contacts, and no
// others. Apply never reads an event's context. The hub's intake decodes
// nothing else of its events (protocol.UnmarshalLean).
func (c *Classifier) ReadsProperties(typ, name, channel string) bool {
	return c.isOrder(typ, name) || c.isContact(typ, name, channel)
}

// IsOrder reports whether e is a purchase and returns its value.
func (c *Classifier) IsOrder(e *protocol.Event) (float64, bool) {
	if !c.isOrder(e.Type, e.Name) {
		return 0, false
	}
	for _, k := range c.r.RevenueProperties {
		switch v := e.Properties[k].(type) {
		case float64:
			return v, true
		case int64:
			return float64(v), true
		}
	}
	return 0, true
}

// Apply folds event e into p. identifiers are the identifiers that resolved
// to p (they are added to p's set by the caller, not here).
func (c *Classifier) Apply(p *Profile, e *protocol.Event) {
	at := e.OccurredAt
	st := Stamp{At: at, EventID: e.ID}
	cp := &p.Computed
	if cp.FirstSeen.IsZero() || at.Before(cp.FirstSeen) {
		cp.FirstSeen = at
	}
	if at.After(cp.LastSeen) {
		cp.LastSeen = at
	}
	cp.Events++
	if e.Source.Edge != "" {
		cp.Edges.Add(e.Source.Edge, 1)
	}
	if e.Channel != "" {
		cp.Channels.Add(e.Channel, 1)
	}
	value, isOrder := c.IsOrder(e)
	if isOrder {
		cp.Orders++
		cp.Revenue += MoneyOf(value)
		if at.After(cp.LastPurchaseAt) {
			cp.LastPurchaseAt = at
		}
		cp.Purchases = addPurchases(cp.Purchases, orderProducts(e))
	}
	site := e.Source.Site
	if site != "" && (isOrder || matchAny(c.r.VisitEvents, e.Name)) {
		cp.SiteVisits.Add(site, 1)
	}
	if c.isContact(e.Type, e.Name, e.Channel) {
		ct := &Contact{Channel: e.Channel, Stamp: st}
		if r, ok := e.Properties["reason"].(string); ok {
			ct.Reason = r
		}
		if cp.LastContact == nil || ct.After(cp.LastContact.Stamp) {
			cp.LastContact = ct
		}
	}
	for k, v := range e.Traits {
		t := Trait{Value: v, Channel: e.Channel, Site: site, Stamp: st}
		if p.Traits == nil {
			p.Traits = make(map[string]Trait)
		}
		if old, ok := p.Traits[k]; !ok || t.After(old.Stamp) {
			p.Traits[k] = t
		}
	}
	for k, g := range e.Consent {
		cs := Consent{Granted: g, Channel: e.Channel, Stamp: st}
		if p.Consent == nil {
			p.Consent = make(map[string]Consent)
		}
		if old, ok := p.Consent[k]; !ok || cs.After(old.Stamp) {
			p.Consent[k] = cs
		}
	}
	if e.ReceivedAt.After(p.UpdatedAt) {
		p.UpdatedAt = e.ReceivedAt
	}
}

// Merge folds src into dst. dst keeps its ID; identifiers are united.
func Merge(dst, src *Profile) {
	for _, id := range src.Identifiers {
		dst.AddIdentifier(id)
	}
	for k, t := range src.Traits {
		if dst.Traits == nil {
			dst.Traits = make(map[string]Trait)
		}
		if old, ok := dst.Traits[k]; !ok || t.After(old.Stamp) {
			dst.Traits[k] = t
		}
	}
	for k, c := range src.Consent {
		if dst.Consent == nil {
			dst.Consent = make(map[string]Consent)
		}
		if old, ok := dst.Consent[k]; !ok || c.After(old.Stamp) {
			dst.Consent[k] = c
		}
	}
	a, b := &dst.Computed, &src.Computed
	if !b.FirstSeen.IsZero() && (a.FirstSeen.IsZero() || b.FirstSeen.Before(a.FirstSeen)) {
		a.FirstSeen = b.FirstSeen
	}
	if b.LastSeen.After(a.LastSeen) {
		a.LastSeen = b.LastSeen
	}
	a.Events += b.Events
	a.Orders += b.Orders
	a.Revenue += b.Revenue
	if b.LastPurchaseAt.After(a.LastPurchaseAt) {
		a.LastPurchaseAt = b.LastPurchaseAt
	}
	a.SiteVisits.Merge(b.SiteVisits)
	a.Channels.Merge(b.Channels)
	a.Edges.Merge(b.Edges)
	a.Purchases = addPurchases(a.Purchases, b.Purchases)
	if b.LastContact != nil && (a.LastContact == nil || b.LastContact.After(a.LastContact.Stamp)) {
		c := *b.LastContact
		a.LastContact = &c
	}
	if src.CreatedAt.Before(dst.CreatedAt) {
		dst.CreatedAt = src.CreatedAt
	}
	if src.UpdatedAt.After(dst.UpdatedAt) {
		dst.UpdatedAt = src.UpdatedAt
	}
}

// AddIdentifier adds id unless present, keeping the list sorted.
func (p *Profile) AddIdentifier(id protocol.Identifier) bool {
	i, found := slices.BinarySearchFunc(p.Identifiers, id, CompareIdentifiers)
	if found {
		return false
	}
	p.Identifiers = slices.Insert(p.Identifiers, i, id)
	return true
}

// CompareIdentifiers orders identifiers by type, then value.
func CompareIdentifiers(a, b protocol.Identifier) int {
	if c := cmp.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	return cmp.Compare(a.Value, b.Value)
}

// Derived are computed traits that depend on the time of reading.
type Derived struct {
	AverageOrderValue float64 `json:"average_order_value"`
	FavouriteSite     string  `json:"favourite_site,omitempty"`
	// Recency, Frequency and Monetary are scores from 1 (low) to 5 (high);
	// RFM is their concatenation, such as "545".
	Recency   int    `json:"recency_score"`
	Frequency int    `json:"frequency_score"`
	Monetary  int    `json:"monetary_score"`
	RFM       string `json:"rfm"`
	// DaysSincePurchase is -1 for a profile without orders.
	DaysSincePurchase int `json:"days_since_purchase"`
}

// RFMThresholds are the lower bounds of scores 2, 3, 4 and 5. Recency is in
// days (lower is better, so its bounds are upper bounds), frequency in
// orders, monetary in revenue.
type RFMThresholds struct {
	RecencyDays [4]int
	Frequency   [4]int64
	Monetary    [4]float64
}

// DefaultRFM suits a retailer with monthly customers.
var DefaultRFM = RFMThresholds{
	RecencyDays: [4]int{180, 90, 30, 7},
	Frequency:   [4]int64{2, 3, 5, 10},
	Monetary:    [4]float64{50, 150, 500, 1500},
}

// Derive computes the read-time traits of p at now.
func Derive(p *Profile, now time.Time, th RFMThresholds) Derived {
	c := &p.Computed
	d := Derived{DaysSincePurchase: -1}
	if c.Orders > 0 {
		d.AverageOrderValue = math.Round(c.Revenue.Float()/float64(c.Orders)*100) / 100
	}
	var best int64
	for site, n := range c.SiteVisits.All() {
		if n > best || (n == best && site < d.FavouriteSite) {
			best, d.FavouriteSite = n, site
		}
	}
	d.Recency, d.Frequency, d.Monetary = 1, 1, 1
	if !c.LastPurchaseAt.IsZero() {
		days := int(now.Sub(c.LastPurchaseAt).Hours() / 24)
		if days < 0 {
			days = 0
		}
		d.DaysSincePurchase = days
		for i, b := range th.RecencyDays {
			if days <= b {
				d.Recency = i + 2
			}
		}
	}
	for i, b := range th.Frequency {
		if c.Orders >= b {
			d.Frequency = i + 2
		}
	}
	for i, b := range th.Monetary {
		if c.Revenue.Float() >= b {
			d.Monetary = i + 2
		}
	}
	d.RFM = string([]byte{byte('0' + d.Recency), byte('0' + d.Frequency), byte('0' + d.Monetary)})
	return d
}

// Money is an amount in ten-thousandths of the currency unit. Integer sums
// are exact and independent of order, which float sums are not.
type Money int64

// MoneyOf converts a float amount, rounding to the nearest ten-thousandth.
func MoneyOf(f float64) Money {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e14 {
		return 0
	}
	return Money(math.Round(f * 10000))
}

// Float returns m in currency units.
func (m Money) Float() float64 { return float64(m) / 10000 }

// MarshalJSON writes m as a decimal number.
func (m Money) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, m.Float(), 'f', -1, 64), nil
}
