package simulate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/unico-cdp/unico/protocol"
)

func newGen(t testing.TB, seed int64, size int, cc string, cfg GeneratorConfig) *Generator {
	t.Helper()
	pop, err := NewPopulation(seed, size, PopulationOptions{CountryCode: cc, Stores: 4})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Seed = seed
	g, err := NewGenerator(pop, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func generate(g *Generator, n int) ([][]byte, []Meta) {
	var msgs [][]byte
	var metas []Meta
	for range n {
		var m Meta
		msgs = append(msgs, g.AppendNext(nil, &m))
		metas = append(metas, m)
	}
	return msgs, metas
}

func TestDeterminism(t *testing.T) {
	a, _ := generate(newGen(t, 7, 500, "", GeneratorConfig{}), 3000)
	b, _ := generate(newGen(t, 7, 500, "", GeneratorConfig{}), 3000)
	c, _ := generate(newGen(t, 8, 500, "", GeneratorConfig{}), 3000)
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("message %d differs for the same seed:\n%s\n%s", i, a[i], b[i])
		}
	}
	same := 0
	for i := range a {
		if bytes.Equal(a[i], c[i]) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("%d messages identical across seeds 7 and 8", same)
	}
}

func idSet(ids []protocol.Identifier) []protocol.Identifier {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b protocol.Identifier) int { return strings.Compare(a.String(), b.String()) })
	return out
}

var wantChannel = map[Kind]string{
	KindPOS: protocol.ChannelPOS, KindKiosk: protocol.ChannelKiosk, KindWeb: protocol.ChannelWeb,
	KindApp: protocol.ChannelApp, KindCall: protocol.ChannelContactCenter, KindPresence: protocol.ChannelIoT,
}

// decodeAll sends every message through the edge's real mapper, in batches
// of 50, and checks each event against its metadata.
func decodeAll(t *testing.T, g *Generator, n int, cc string) ([]protocol.Event, []Meta) {
	t.Helper()
	mp, err := protocol.NewMapper(protocol.MapOptions{DefaultCountryCode: cc})
	if err != nil {
		t.Fatal(err)
	}
	var evs []protocol.Event
	var metas []Meta
	var b Batch
	for len(metas) < n {
		b.Reset()
		g.Fill(&b, 50)
		got, err := mp.Decode(protocol.EndpointBatch, b.Body(), nil)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, b.Body())
		}
		evs = append(evs, got...)
		metas = append(metas, b.Metas...)
	}
	ids := make(map[string]bool)
	for i, ev := range evs {
		m := &metas[i]
		if d := cmp.Diff(idSet(m.Identifiers()), idSet(ev.Identifiers)); d != "" {
			t.Fatalf("event %d (%s %s): identifiers (-meta +mapper):\n%s", i, m.Kind, ev.Name, d)
		}
		if ev.Channel != wantChannel[m.Kind] {
			t.Errorf("event %d (%s): channel %q, want %q", i, m.Kind, ev.Channel, wantChannel[m.Kind])
		}
		if ids[ev.ID] {
			t.Fatalf("event %d: duplicate messageId %s", i, ev.ID)
		}
		ids[ev.ID] = true
		if got, want := ev.Properties["store_id"], g.pop.Stores[m.Store].ID; got != want {
			t.Errorf("event %d: properties.store_id %v, want %v", i, got, want)
		}
		if got, want := ev.Context["store_id"], g.pop.Stores[m.Store].ID; got != want {
			t.Errorf("event %d: context.store_id %v, want %v", i, got, want)
		}
		isOrder := ev.Type == protocol.TypeTrack && ev.Name == "Order Completed"
		if isOrder != m.Order {
			t.Errorf("event %d: order %v, meta says %v", i, isOrder, m.Order)
		}
		if isOrder {
			rev, ok := ev.Properties["revenue"].(float64)
			if !ok {
				if n, isInt := ev.Properties["revenue"].(int64); isInt {
					rev, ok = float64(n), true
				}
			}
			if !ok || Cents(int64(rev*100+0.5)) != m.Revenue {
				t.Errorf("event %d: revenue %v, meta %v", i, ev.Properties["revenue"], m.Revenue.Float())
			}
		}
		if m.Kind == KindKiosk && ev.Consent["analytics"] != true {
			t.Errorf("event %d: kiosk consent %v", i, ev.Consent)
		}
		if m.Contact != (ev.Channel == protocol.ChannelContactCenter) || (m.Contact && ev.Properties["reason"] == nil) {
			t.Errorf("event %d: contact %v, channel %s, reason %v", i, m.Contact, ev.Channel, ev.Properties["reason"])
		}
	}
	return evs, metas
}

func TestMessagesDecode(t *testing.T) {
	tests := []struct {
		name string
		cc   string
		mix  Mix
	}{
		{name: "default mix, UK", cc: "44"},
		{name: "default mix, US", cc: "1"},
		{name: "default mix, Italy", cc: "39"},
		{name: "calls only", cc: "353", mix: Mix{Call: 1}},
		{name: "kiosk and app", cc: "44", mix: Mix{Kiosk: 1, App: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGen(t, 42, 2000, tt.cc, GeneratorConfig{Mix: tt.mix})
			_, metas := decodeAll(t, g, 6000, tt.cc)
			kinds := map[Kind]int{}
			for _, m := range metas {
				kinds[m.Kind]++
			}
			want := tt.mix
			if want == (Mix{}) {
				want = DefaultMix
			}
			for k, w := range want.weights() {
				if (w > 0) != (kinds[Kind(k)] > 0) {
					t.Errorf("kind %s: weight %v but %d messages", Kind(k), w, kinds[Kind(k)])
				}
			}
		})
	}
}

func TestTruthMatchesMapper(t *testing.T) {
	const cc = "44"
	g := newGen(t, 3, 1500, cc, GeneratorConfig{})
	evs, metas := decodeAll(t, g, 20000, cc)
	truth := NewTruth(g.pop)
	truth.Record(metas)
	recs := truth.Records()

	// What the mapper extracted, per person who caused the event.
	want := make(map[string]map[protocol.Identifier]bool)
	for i, ev := range evs {
		key := g.pop.Persons[metas[i].Person].Key
		if want[key] == nil {
			want[key] = map[protocol.Identifier]bool{}
		}
		for _, id := range ev.Identifiers {
			want[key][id] = true
		}
	}
	owners := make(map[protocol.Identifier][]string)
	shared := make(map[protocol.Identifier]string)
	noise := map[string]int{}
	for _, r := range recs {
		got := map[protocol.Identifier]bool{}
		for _, ti := range r.Identifiers {
			id := protocol.Identifier{Type: ti.Type, Value: ti.Value}
			got[id] = true
			owners[id] = append(owners[id], r.Person)
			if ti.Shared != "" {
				shared[id] = ti.Shared
				noise[ti.Shared]++
			}
		}
		if len(got) == 0 {
			got = nil
		}
		if d := cmp.Diff(want[r.Person], got); d != "" {
			t.Fatalf("person %s: identifiers (-mapper +truth):\n%s", r.Person, d)
		}
	}
	// Every identifier of every event belongs to exactly one person, to
	// the person who caused the event, unless it is listed as shared.
	for i, ev := range evs {
		for _, id := range ev.Identifiers {
			if _, ok := shared[id]; ok {
				continue
			}
			if o := owners[id]; len(o) != 1 || o[0] != g.pop.Persons[metas[i].Person].Key {
				t.Fatalf("event %d: identifier %s owned by %v, caused by %s", i, id, o, g.pop.Persons[metas[i].Person].Key)
			}
		}
	}
	for id, kind := range shared {
		if k, ok := g.pop.Shared(id); !ok || k != kind {
			t.Errorf("identifier %s listed as shared %q, population says %q", id, kind, k)
		}
	}
	for _, kind := range []string{SharedFamilyEmail, SharedStoreCard, SharedPOSTerminal} {
		if noise[kind] == 0 {
			t.Errorf("no %s in the truth", kind)
		}
	}
	// Mistyped phones are separate identifiers of the same person.
	typos := 0
	for i, p := range g.pop.Persons {
		if p.TypoPhone == "" {
			continue
		}
		var phones []string
		for _, ti := range recs[i].Identifiers {
			if ti.Type == protocol.IDPhone {
				phones = append(phones, ti.Value)
			}
		}
		if slices.Contains(phones, "+"+cc+p.TypoPhone) {
			typos++
			if p.TypoPhone == p.Phone {
				t.Errorf("person %s: typo phone equals phone", p.Key)
			}
		}
	}
	if typos == 0 {
		t.Error("no mistyped phone in the truth")
	}
	// Order totals agree with the events.
	var orders, identified int64
	var revenue Cents
	for _, r := range recs {
		orders += r.Orders
		identified += r.IdentifiedOrders
		revenue += r.Revenue
	}
	var wantOrders int64
	var wantRevenue Cents
	for i, ev := range evs {
		if ev.Name == "Order Completed" {
			wantOrders++
			wantRevenue += metas[i].Revenue
		}
	}
	if orders != wantOrders || revenue != wantRevenue || identified == 0 || identified >= orders {
		t.Errorf("truth orders %d (identified %d) revenue %v, events %d revenue %v", orders, identified, revenue, wantOrders, wantRevenue)
	}
}

func TestWriteReadTruth(t *testing.T) {
	g := newGen(t, 5, 300, "", GeneratorConfig{})
	_, metas := generate(g, 2000)
	truth := NewTruth(g.pop)
	truth.Record(metas)
	var buf bytes.Buffer
	if err := truth.WriteTruth(&buf); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 300 {
		t.Errorf("%d lines, want one per person (300)", n)
	}
	got, err := ReadTruth(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(truth.Records(), got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
}

func TestNewPopulationErrors(t *testing.T) {
	tests := []struct {
		name string
		size int
		opts PopulationOptions
	}{
		{"zero size", 0, PopulationOptions{}},
		{"negative stores", 10, PopulationOptions{Stores: -1}},
		{"country code with plus", 10, PopulationOptions{CountryCode: "+44"}},
		{"country code too long", 10, PopulationOptions{CountryCode: "44444"}},
		{"country code leading zero", 10, PopulationOptions{CountryCode: "044"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewPopulation(1, tt.size, tt.opts); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    Mix
		wantErr bool
	}{
		{in: "pos=3,web=1", want: Mix{POS: 3, Web: 1}},
		{in: " kiosk = 2 , call=0.5,presence=1,app=4", want: Mix{Kiosk: 2, Call: 0.5, Presence: 1, App: 4}},
		{in: "", want: Mix{}},
		{in: "pos", wantErr: true},
		{in: "shop=1", wantErr: true},
		{in: "pos=-1", wantErr: true},
		{in: "pos=x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMix(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("err = %v, want ErrInvalidConfig", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestAppendStr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{`quote " and \ backslash`, `quote " and \ backslash`},
		{"ctl \x01\n\t\r", "ctl \x01\n\t\r"},
		{"ünïcødé ✓", "ünïcødé ✓"},
		{"bad \xff utf8", "bad \ufffd utf8"},
	}
	for _, tt := range tests {
		b := appendStr(nil, tt.in)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q: %s: %v", tt.in, b, err)
		}
		if got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

const retailHead = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"

func TestReadBaskets(t *testing.T) {
	tests := []struct {
		name    string
		csv     string
		want    []Basket
		wantErr bool
	}{
		{
			name: "two invoices, cancellation and bad lines skipped",
			csv: retailHead +
				"536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n" +
				"536366,22633,\"HAND WARMER, UNION JACK\",6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom\n" +
				"536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,,United Kingdom\n" +
				"C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n" +
				"536380,POST,POSTAGE,1,2010-12-01 09:41:00,0,,France\n",
			want: []Basket{
				{Invoice: "536365", Lines: []BasketLine{
					{StockCode: "85123A", Description: "WHITE HANGING HEART T-LIGHT HOLDER", Quantity: 6, UnitPrice: 255},
					{StockCode: "71053", Description: "WHITE METAL LANTERN", Quantity: 6, UnitPrice: 339},
				}},
				{Invoice: "536366", Lines: []BasketLine{{StockCode: "22633", Description: "HAND WARMER, UNION JACK", Quantity: 6, UnitPrice: 185}}},
			},
		},
		{name: "wrong header", csv: "a,b,c,d,e,f,g,h\n", wantErr: true},
		{name: "empty", csv: "", wantErr: true},
		{name: "bad quantity", csv: retailHead + "1,A,B,x,2010-12-01 08:26:00,1,,UK\n", wantErr: true},
		{name: "missing column", csv: retailHead + "1,A,B,1,2010-12-01 08:26:00,1,UK\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadBaskets(strings.NewReader(tt.csv))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

const retailFile = "../../shared/data/online-retail/online_retail_2010-12.csv"

func TestLoadBasketsRealData(t *testing.T) {
	if _, err := os.Stat(retailFile); err != nil {
		t.Skip("SKIP: ../shared/data not present")
	}
	bs, err := LoadBaskets(retailFile)
	if err != nil {
		t.Fatal(err)
	}
	// 2,025 invoices of which some are cancellations or have no sellable line.
	if len(bs) < 1000 || len(bs) > 2025 {
		t.Fatalf("%d baskets", len(bs))
	}
	g := newGen(t, 1, 500, "44", GeneratorConfig{Baskets: bs, Mix: Mix{POS: 1}})
	_, metas := decodeAll(t, g, 2000, "44")
	for _, m := range metas {
		if !m.Order || m.Revenue <= 0 {
			t.Fatalf("meta %+v: want an order with revenue", m)
		}
	}
}

func TestCatalogue(t *testing.T) {
	cats := map[string]int{}
	ids := map[string]bool{}
	for _, p := range Catalogue() {
		cats[p.Category]++
		if ids[p.ID] || p.Price <= 0 {
			t.Errorf("product %+v: duplicate id or no price", p)
		}
		ids[p.ID] = true
		for _, w := range p.With {
			if w < 0 || w >= len(catalogue) {
				t.Errorf("product %s: companion %d out of range", p.ID, w)
			}
		}
	}
	if len(ids) != 60 || len(cats) != 10 {
		t.Errorf("%d products in %d categories, want 60 in 10", len(ids), len(cats))
	}
}

func BenchmarkFill(b *testing.B) {
	for _, n := range []int{20, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			g := newGen(b, 1, 100000, "44", GeneratorConfig{})
			var bt Batch
			b.ReportAllocs()
			var bytes int64
			for b.Loop() {
				bt.Reset()
				g.Fill(&bt, n)
				bytes += int64(len(bt.Body()))
			}
			b.SetBytes(bytes / int64(b.N))
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
