package simulate

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// Kind is a kind of scenario the generator plays out. One scenario yields
// one message (a sale, a kiosk identification, a call) or several (the pages
// of a session and its identify, a presence enter and its exit).
type Kind uint8

// Scenario kinds.
const (
	KindPOS      Kind = iota // a sale at a till: track "Order Completed"
	KindKiosk                // identification at a kiosk: identify with e-mail and consent
	KindWeb                  // a browser session: pages, maybe an identify
	KindApp                  // an app session: screens, maybe an identify
	KindCall                 // a contact-center call: track "Call Completed"
	KindPresence             // a beacon or sensor visit: presence.enter, later presence.exit
	numKinds
)

var kindNames = [numKinds]string{"pos", "kiosk", "web", "app", "call", "presence"}

// String returns the kind's name as used by ParseMix.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Mix holds the relative weight of each scenario kind when a new scenario
// starts. Negative weights are invalid; all zero means DefaultMix.
type Mix struct {
	POS, Kiosk, Web, App, Call, Presence float64
}

// DefaultMix is the mix used when none is given.
var DefaultMix = Mix{POS: 30, Kiosk: 5, Web: 25, App: 15, Call: 5, Presence: 20}

func (m Mix) weights() [numKinds]float64 {
	return [numKinds]float64{m.POS, m.Kiosk, m.Web, m.App, m.Call, m.Presence}
}

// ParseMix parses "pos=30,kiosk=5,web=25,app=15,call=5,presence=20". Kinds
// not named get weight 0.
func ParseMix(s string) (Mix, error) {
	var w [numKinds]float64
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return Mix{}, fmt.Errorf("mix %q: want kind=weight: %w", part, ErrInvalidConfig)
		}
		k := -1
		for i, n := range kindNames {
			if n == strings.TrimSpace(name) {
				k = i
			}
		}
		if k < 0 {
			return Mix{}, fmt.Errorf("mix kind %q: want one of %s: %w", name, strings.Join(kindNames[:], ", "), ErrInvalidConfig)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || f < 0 {
			return Mix{}, fmt.Errorf("mix weight %q: want a number >= 0: %w", val, ErrInvalidConfig)
		}
		w[k] = f
	}
	return Mix{POS: w[0], Kiosk: w[1], Web: w[2], App: w[3], Call: w[4], Presence: w[5]}, nil
}

// maxIDs bounds the identifiers one generated message carries.
const maxIDs = 6

// Meta describes a generated message for bookkeeping: whose it is and what
// the edge's mapper will extract from it.
type Meta struct {
	Kind Kind
	// Person is the index in Population.Persons of the person who caused
	// the message.
	Person int
	// Store is the index in Population.Stores of the store (and so the
	// edge) the message belongs to.
	Store int
	// Order is set for "Order Completed" tracks, with their Revenue.
	Order   bool
	Revenue Cents
	// Contact is set for contact-center interactions.
	Contact bool
	// Visit is set, with GeneratorConfig.PresenceFrames, for a presence
	// visit that sensors report in device frames. The message, if any, is
	// the app's identify linking its beacon id to the person; a visit by a
	// shopper without the app has no message at all (AppendNext appends
	// nothing).
	Visit *Visit
	n     uint8
	ids   [maxIDs]protocol.Identifier
}

// Identifiers returns the identifiers, normalised as the edge normalises
// them, that the message carries.
func (m *Meta) Identifiers() []protocol.Identifier { return m.ids[:m.n] }

func (m *Meta) add(t, v string) {
	if v == "" {
		return
	}
	for _, id := range m.ids[:m.n] {
		if id.Type == t && id.Value == v {
			return
		}
	}
	m.ids[m.n] = protocol.Identifier{Type: t, Value: v}
	m.n++
}

// GeneratorConfig configures NewGenerator. Zero fields take the documented
// defaults.
type GeneratorConfig struct {
	// Seed makes the sequence of messages deterministic.
	Seed int64
	// Mix weights the scenario kinds; default DefaultMix.
	Mix Mix
	// Start is where the simulated clock starts; default
	// 2025-01-06T09:00:00Z. The clock advances 0–400 ms per message.
	Start time.Time
	// Now, when set, stamps messages with real time instead of the
	// simulated clock (the sequence stays deterministic, timestamps don't).
	Now func() time.Time
	// RunID prefixes every messageId and order id; default "sim<seed>".
	// Runs that must not be deduplicated against each other need distinct
	// run ids.
	RunID string
	// Baskets, when not empty, are drawn for POS sales instead of baskets
	// built from the built-in catalogue.
	Baskets []Basket
	// PresenceFrames turns presence scenarios into visits for sensor
	// frames (Meta.Visit) instead of presence.enter and presence.exit
	// tracks over HTTP. Fill must not be used then.
	PresenceFrames bool
}

// DefaultStart is the default start of the simulated clock.
var DefaultStart = time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC)

type pending struct {
	kind     Kind
	person   int32
	store    int32
	left     int8
	identify bool
	useUser  bool
	anon     string
	card     string
	zone     string
}

// Generator produces a deterministic stream of Segment messages from a
// population. It is not safe for concurrent use.
type Generator struct {
	pop     *Population
	cfg     GeneratorConfig
	rng     *rand.Rand
	cum     [numKinds]float64
	total   float64
	clock   time.Time
	seq     uint64
	pending []pending
	head    int
	// Persons having a given identifier, for scenarios that need one.
	withEmail, withPhone, withApp []int32
}

// NewGenerator returns a generator over pop.
func NewGenerator(pop *Population, cfg GeneratorConfig) (*Generator, error) {
	if pop == nil || len(pop.Persons) == 0 || len(pop.Stores) == 0 {
		return nil, fmt.Errorf("empty population: %w", ErrInvalidConfig)
	}
	w := cfg.Mix.weights()
	var total float64
	for i, x := range w {
		if x < 0 {
			return nil, fmt.Errorf("mix weight of %s is negative: %w", Kind(i), ErrInvalidConfig)
		}
		total += x
	}
	if total == 0 {
		cfg.Mix = DefaultMix
		w = cfg.Mix.weights()
	}
	if cfg.Start.IsZero() {
		cfg.Start = DefaultStart
	}
	if cfg.RunID == "" {
		cfg.RunID = "sim" + strconv.FormatInt(cfg.Seed, 10)
	}
	g := &Generator{
		pop:   pop,
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(uint64(cfg.Seed), 0x67656e)),
		clock: cfg.Start.UTC(),
	}
	for i, x := range w {
		g.total += x
		g.cum[i] = g.total
	}
	for i := range pop.Persons {
		p := &pop.Persons[i]
		if len(p.Emails) > 0 {
			g.withEmail = append(g.withEmail, int32(i))
		}
		if p.Phone != "" {
			g.withPhone = append(g.withPhone, int32(i))
		}
		if p.AppAnonID != "" {
			g.withApp = append(g.withApp, int32(i))
		}
	}
	return g, nil
}

// Population returns the generator's population.
func (g *Generator) Population() *Population { return g.pop }

// AppendNext appends the next message, a JSON object, to dst and describes
// it in meta.
func (g *Generator) AppendNext(dst []byte, meta *Meta) []byte {
	*meta = Meta{}
	g.seq++
	if g.cfg.Now == nil {
		g.clock = g.clock.Add(time.Duration(g.rng.IntN(400)) * time.Millisecond)
	}
	if n := len(g.pending) - g.head; n > 0 && (n > 64 || g.rng.IntN(3) == 0) {
		p := g.pending[g.head]
		g.pending[g.head] = pending{}
		g.head++
		if g.head == len(g.pending) {
			g.pending, g.head = g.pending[:0], 0
		}
		return g.followUp(dst, p, meta)
	}
	x := g.rng.Float64() * g.total
	k := KindPOS
	for i, c := range g.cum {
		if x < c {
			k = Kind(i)
			break
		}
	}
	switch k {
	case KindKiosk:
		if len(g.withEmail) > 0 {
			return g.kiosk(dst, meta)
		}
	case KindApp:
		if len(g.withApp) > 0 {
			return g.appSession(dst, meta)
		}
	case KindCall:
		if len(g.withPhone) > 0 {
			return g.call(dst, meta)
		}
	case KindPresence:
		if g.cfg.PresenceFrames {
			return g.visit(dst, meta)
		}
		return g.presence(dst, meta)
	case KindPOS:
		return g.sale(dst, meta)
	}
	return g.webSession(dst, meta)
}

// pick returns a person index from n, skewed so that some people come far
// more often than others.
func (g *Generator) pick(n int) int {
	u := g.rng.Float64()
	return int(u * u * float64(n))
}

func (g *Generator) pickFrom(list []int32) int { return int(list[g.pick(len(list))]) }

func (g *Generator) storeFor(p *Person) int {
	if g.rng.IntN(100) < 85 {
		return p.Home
	}
	return g.rng.IntN(len(g.pop.Stores))
}

// begin writes the common head of a message.
func (g *Generator) begin(b []byte, typ string, meta *Meta, kind Kind, person, store int) []byte {
	meta.Kind, meta.Person, meta.Store = kind, person, store
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","messageId":"`...)
	b = append(b, g.cfg.RunID...)
	b = append(b, '-')
	b = strconv.AppendUint(b, g.seq, 10)
	b = append(b, `","timestamp":"`...)
	t := g.clock
	if g.cfg.Now != nil {
		t = g.cfg.Now().UTC()
	}
	b = t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	return append(b, '"')
}

func (g *Generator) ids(b []byte, meta *Meta, userID, anonID string) []byte {
	if userID != "" {
		b = appendKeyStr(b, "userId", userID)
		meta.add(protocol.IDUserID, userID)
	}
	if anonID != "" {
		b = appendKeyStr(b, "anonymousId", anonID)
		meta.add(protocol.IDAnonymousID, anonID)
	}
	return b
}

// seqID returns prefix-runID-seq, an id unique to this message.
func (g *Generator) seqID(prefix string) string {
	return prefix + g.cfg.RunID + "-" + strconv.FormatUint(g.seq, 10)
}

func (g *Generator) sale(b []byte, meta *Meta) []byte {
	pi := g.pick(len(g.pop.Persons))
	p := &g.pop.Persons[pi]
	si := g.storeFor(p)
	st := &g.pop.Stores[si]
	orderID := g.seqID("o-" + st.ID + "-")
	var card, userID, anonID, email string
	switch {
	case p.LoyaltyID != "" && g.rng.IntN(100) < 85:
		card = p.LoyaltyID
	case g.rng.IntN(100) < 25:
		card = st.GenericCard
	}
	if card == p.LoyaltyID && card != "" {
		if p.UserID != "" && g.rng.IntN(100) < 30 {
			userID = p.UserID // paid with the app
		} else {
			anonID = "rcpt-" + orderID
		}
		if len(p.Emails) > 0 && g.rng.IntN(100) < 20 {
			email = p.Emails[g.rng.IntN(len(p.Emails))] // e-receipt
		}
	} else {
		anonID = st.Terminals[g.rng.IntN(len(st.Terminals))]
	}
	b = g.begin(b, "track", meta, KindPOS, pi, si)
	b = g.ids(b, meta, userID, anonID)
	b = append(b, `,"event":"Order Completed","properties":{"order_id":`...)
	b = appendStr(b, orderID)
	b = appendKeyStr(b, "currency", "GBP")
	b = appendKeyStr(b, "store_id", st.ID)
	if card != "" {
		b = appendKeyStr(b, "loyalty_id", card)
		meta.add(protocol.IDLoyaltyID, card)
	}
	b = append(b, `,"products":[`...)
	var revenue int64
	b, revenue = g.basket(b)
	b = append(b, `],"revenue":`...)
	b = appendMoney(b, revenue)
	b = append(b, `},"context":{"channel":"pos"`...)
	b = appendKeyStr(b, "store_id", st.ID)
	if email != "" {
		b = append(b, `,"traits":{"email":`...)
		b = appendStr(b, email)
		b = append(b, '}')
		meta.add(protocol.IDEmail, email)
	}
	meta.Order, meta.Revenue = true, Cents(revenue)
	return append(b, "}}"...)
}

func appendProduct(b []byte, id, sku, name, category string, price int64, qty int) []byte {
	b = append(b, `{"product_id":`...)
	b = appendStr(b, id)
	b = appendKeyStr(b, "sku", sku)
	b = appendKeyStr(b, "name", name)
	b = append(b, `,"price":`...)
	b = appendMoney(b, price)
	b = appendKeyInt(b, "quantity", int64(qty))
	b = appendKeyStr(b, "category", category)
	return append(b, '}')
}

// maxBasketLines bounds the products of one sale, keeping messages well
// under the edge's 32 KiB message limit.
const maxBasketLines = 30

// basket appends the products of a sale and returns the revenue.
func (g *Generator) basket(b []byte) ([]byte, int64) {
	var revenue int64
	if len(g.cfg.Baskets) > 0 {
		bk := &g.cfg.Baskets[g.rng.IntN(len(g.cfg.Baskets))]
		for i, l := range bk.Lines {
			if i == maxBasketLines {
				break
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = appendProduct(b, l.StockCode, l.StockCode, l.Description, BasketCategory, l.UnitPrice, l.Quantity)
			revenue += l.UnitPrice * int64(l.Quantity)
		}
		return b, revenue
	}
	var chosen [8]int
	n := 0
	has := func(x int) bool {
		for _, c := range chosen[:n] {
			if c == x {
				return true
			}
		}
		return false
	}
	anchors := 1 + g.rng.IntN(3)
	for range anchors {
		a := g.rng.IntN(len(catalogue))
		if !has(a) {
			chosen[n] = a
			n++
		}
		if w := catalogue[a].With; len(w) > 0 && g.rng.IntN(100) < 60 {
			if c := w[g.rng.IntN(len(w))]; !has(c) {
				chosen[n] = c
				n++
			}
		}
	}
	for i, c := range chosen[:n] {
		if i > 0 {
			b = append(b, ',')
		}
		p := &catalogue[c]
		qty := 1
		if g.rng.IntN(100) < 20 {
			qty = 2 + g.rng.IntN(3)
		}
		b = appendProduct(b, p.ID, p.SKU, p.Name, p.Category, p.Price, qty)
		revenue += p.Price * int64(qty)
	}
	return b, revenue
}

// messyEmail returns e as people type it at a kiosk: sometimes in capitals,
// sometimes with blanks around it.
func (g *Generator) messyEmail(e string) string {
	switch g.rng.IntN(6) {
	case 0:
		return strings.ToUpper(e)
	case 1:
		return "  " + e + " "
	case 2:
		return strings.ToUpper(e[:1]) + e[1:]
	}
	return e
}

// messyPhone formats a national significant number the many ways people
// and systems write it. All of them normalise to the same E.164 number
// with the population's country code.
func (g *Generator) messyPhone(nsn string) string {
	cc := g.pop.CountryCode
	switch g.rng.IntN(6) {
	case 0:
		return "0" + nsn[:4] + " " + nsn[4:]
	case 1:
		return "0" + nsn[:4] + "-" + nsn[4:7] + "-" + nsn[7:]
	case 2:
		return "+" + cc + " " + nsn[:4] + " " + nsn[4:]
	case 3:
		return "00" + cc + " " + nsn[:4] + " " + nsn[4:]
	case 4:
		return "+" + cc + nsn
	}
	return "(0" + nsn[:4] + ") " + nsn[4:]
}

func (g *Generator) marketingConsent(pi int) bool {
	// Stable per person, with an occasional change of mind.
	return (pi*7919)%3 != 0 != (g.rng.IntN(20) == 0)
}

func (g *Generator) kiosk(b []byte, meta *Meta) []byte {
	pi := g.pickFrom(g.withEmail)
	p := &g.pop.Persons[pi]
	si := g.storeFor(p)
	st := &g.pop.Stores[si]
	email := p.Emails[g.rng.IntN(len(p.Emails))]
	b = g.begin(b, "identify", meta, KindKiosk, pi, si)
	b = g.ids(b, meta, "", g.seqID("kiosk-"+st.ID+"-"))
	b = append(b, `,"traits":{"email":`...)
	b = appendStr(b, g.messyEmail(email))
	meta.add(protocol.IDEmail, email)
	if p.LoyaltyID != "" && g.rng.IntN(100) < 30 {
		b = appendKeyStr(b, "loyalty_id", p.LoyaltyID)
		meta.add(protocol.IDLoyaltyID, p.LoyaltyID)
	}
	b = append(b, `},"properties":{"store_id":`...)
	b = appendStr(b, st.ID)
	b = append(b, `},"context":{"channel":"kiosk"`...)
	b = appendKeyStr(b, "store_id", st.ID)
	b = append(b, `,"consent":{"categoryPreferences":{"marketing":`...)
	b = strconv.AppendBool(b, g.marketingConsent(pi))
	return append(b, `,"analytics":true}}}}`...)
}

var webPages = [...][2]string{
	{"Home", "/"}, {"Bedding", "/c/bedding"}, {"Pillows", "/c/bedding/pillows"}, {"Pillow covers", "/c/bed-linen/pillow-covers"},
	{"Kitchen", "/c/kitchen"}, {"Offers", "/offers"}, {"Store finder", "/stores"}, {"Basket", "/basket"},
}

var appScreens = [...]string{"Home", "Loyalty card", "Offers", "Product", "Basket", "Store mode"}

func (g *Generator) webSession(b []byte, meta *Meta) []byte {
	pi := g.pick(len(g.pop.Persons))
	p := &g.pop.Persons[pi]
	pd := pending{kind: KindWeb, person: int32(pi), store: int32(p.Home),
		left: int8(g.rng.IntN(5)), anon: p.WebAnonIDs[g.rng.IntN(len(p.WebAnonIDs))],
		identify: p.UserID != "" && g.rng.IntN(100) < 50}
	return g.sessionStep(b, pd, meta)
}

func (g *Generator) appSession(b []byte, meta *Meta) []byte {
	pi := g.pickFrom(g.withApp)
	p := &g.pop.Persons[pi]
	pd := pending{kind: KindApp, person: int32(pi), store: int32(p.Home),
		left: int8(g.rng.IntN(4)), anon: p.AppAnonID,
		identify: p.UserID != "" && g.rng.IntN(100) < 40}
	return g.sessionStep(b, pd, meta)
}

// sessionStep writes one page or screen of a session, or its closing
// identify, and queues the rest of the session.
func (g *Generator) sessionStep(b []byte, pd pending, meta *Meta) []byte {
	pi, si := int(pd.person), int(pd.store)
	p := &g.pop.Persons[pi]
	st := &g.pop.Stores[si]
	app := pd.kind == KindApp
	if pd.left < 0 {
		// The session ends with the classic anonymous-to-known stitch.
		b = g.begin(b, "identify", meta, pd.kind, pi, si)
		b = g.ids(b, meta, p.UserID, pd.anon)
		b = append(b, `,"traits":{"user_id":`...)
		b = appendStr(b, p.UserID)
		if len(p.Emails) > 0 {
			e := p.Emails[0]
			b = appendKeyStr(b, "email", e)
			meta.add(protocol.IDEmail, e)
		}
		if p.Phone != "" && g.rng.IntN(100) < 15 {
			b = appendKeyStr(b, "phone", g.messyPhone(p.Phone))
			meta.add(protocol.IDPhone, p.phoneNorm)
		}
		b = append(b, `},"properties":{"store_id":`...)
		b = appendStr(b, st.ID)
		b = append(b, '}')
	} else {
		if app {
			b = g.begin(b, "screen", meta, pd.kind, pi, si)
			b = g.ids(b, meta, "", pd.anon)
			b = appendKeyStr(b, "name", appScreens[g.rng.IntN(len(appScreens))])
			b = append(b, `,"properties":{"store_id":`...)
			b = appendStr(b, st.ID)
			b = append(b, '}')
		} else {
			pg := webPages[g.rng.IntN(len(webPages))]
			b = g.begin(b, "page", meta, pd.kind, pi, si)
			b = g.ids(b, meta, "", pd.anon)
			b = appendKeyStr(b, "name", pg[0])
			b = append(b, `,"properties":{"path":`...)
			b = appendStr(b, pg[1])
			b = appendKeyStr(b, "url", "https://shop.example.com"+pg[1])
			b = appendKeyStr(b, "store_id", st.ID)
			b = append(b, '}')
		}
		pd.left--
		if pd.left >= 0 || pd.identify {
			g.pending = append(g.pending, pd)
		}
	}
	if app {
		b = append(b, `,"context":{"channel":"mobile","device":{"id":`...)
		b = appendStr(b, p.DeviceID)
		b = append(b, `,"type":"ios"}`...)
		meta.add(protocol.IDDeviceID, p.DeviceID)
	} else {
		b = append(b, `,"context":{"channel":"browser"`...)
	}
	b = appendKeyStr(b, "store_id", st.ID)
	return append(b, "}}"...)
}

var callReasons = [...]string{"delivery", "return", "complaint", "loyalty points"}

func (g *Generator) call(b []byte, meta *Meta) []byte {
	pi := g.pickFrom(g.withPhone)
	p := &g.pop.Persons[pi]
	si := p.Home
	st := &g.pop.Stores[si]
	phone, norm := p.Phone, p.phoneNorm
	if p.TypoPhone != "" && g.rng.IntN(100) < 30 {
		phone, norm = p.TypoPhone, p.typoNorm
	}
	userID := ""
	if p.UserID != "" && g.rng.IntN(100) < 30 {
		userID = p.UserID // the agent found the account
	}
	b = g.begin(b, "track", meta, KindCall, pi, si)
	b = g.ids(b, meta, userID, g.seqID("call-"))
	b = append(b, `,"event":"Call Completed","properties":{"reason":`...)
	b = appendStr(b, callReasons[g.rng.IntN(len(callReasons))])
	b = appendKeyInt(b, "duration", int64(30+g.rng.IntN(900)))
	b = appendKeyStr(b, "store_id", st.ID)
	b = append(b, `},"context":{"channel":"contact_center"`...)
	b = appendKeyStr(b, "store_id", st.ID)
	b = append(b, `,"traits":{"phone":`...)
	b = appendStr(b, g.messyPhone(phone))
	meta.add(protocol.IDPhone, norm)
	meta.Contact = true
	return append(b, "}}}"...)
}

var zones = [...]string{"entrance", "bedding", "kitchen", "lighting", "checkout", "cafe"}

func (g *Generator) presence(b []byte, meta *Meta) []byte {
	pi := g.pick(len(g.pop.Persons))
	p := &g.pop.Persons[pi]
	si := g.storeFor(p)
	pd := pending{kind: KindPresence, person: int32(pi), store: int32(si), zone: zones[g.rng.IntN(len(zones))]}
	if p.AppAnonID != "" && g.rng.IntN(100) < 70 {
		// The app's beacon is known: it reports the account or the card.
		pd.useUser = p.UserID != ""
		pd.card = p.LoyaltyID
		pd.anon = p.AppAnonID
	} else {
		pd.anon = g.seqID("visit-" + g.pop.Stores[si].ID + "-")
	}
	g.pending = append(g.pending, pd)
	return g.presenceMsg(b, pd, "presence.enter", meta)
}

func (g *Generator) presenceMsg(b []byte, pd pending, event string, meta *Meta) []byte {
	pi, si := int(pd.person), int(pd.store)
	p := &g.pop.Persons[pi]
	st := &g.pop.Stores[si]
	b = g.begin(b, "track", meta, KindPresence, pi, si)
	if pd.useUser {
		b = g.ids(b, meta, p.UserID, "")
	} else {
		b = g.ids(b, meta, "", pd.anon)
	}
	b = append(b, `,"event":`...)
	b = appendStr(b, event)
	b = append(b, `,"properties":{"zone":`...)
	b = appendStr(b, pd.zone)
	b = appendKeyStr(b, "store_id", st.ID)
	if pd.card != "" {
		b = appendKeyStr(b, "loyalty_id", pd.card)
		meta.add(protocol.IDLoyaltyID, pd.card)
	}
	b = append(b, `},"context":{"channel":"iot"`...)
	b = appendKeyStr(b, "store_id", st.ID)
	return append(b, "}}"...)
}

func (g *Generator) followUp(b []byte, pd pending, meta *Meta) []byte {
	if pd.kind == KindPresence {
		return g.presenceMsg(b, pd, "presence.exit", meta)
	}
	return g.sessionStep(b, pd, meta)
}
