package offers

import (
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// retailPath is the Online Retail data set, relative to this package.
var retailPath = filepath.Join("..", "..", "..", "shared", "data", "online-retail", "online_retail_2010-12.csv")

// loadRetail reads the baskets of identified customers, cancellations and
// returns left out, one purchase history per customer.
func loadRetail(t *testing.T) [][]Purchase {
	t.Helper()
	f, err := os.Open(retailPath)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("SKIP: %s is absent", retailPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = true
	if _, err := r.Read(); err != nil {
		t.Fatal(err)
	}
	byCustomer := map[string][]Purchase{}
	var order []string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		invoice, code, desc, qty, date, customer := rec[0], rec[1], rec[2], rec[3], rec[4], rec[6]
		if customer == "" || strings.HasPrefix(invoice, "C") {
			continue
		}
		if q, err := strconv.Atoi(qty); err != nil || q <= 0 {
			continue
		}
		at, err := time.Parse(time.DateTime, date)
		if err != nil {
			t.Fatalf("InvoiceDate %q: %v", date, err)
		}
		if _, ok := byCustomer[customer]; !ok {
			order = append(order, customer)
		}
		byCustomer[customer] = append(byCustomer[customer], Purchase{Product: code, Name: strings.ToLower(strings.TrimSpace(desc)), At: at})
	}
	out := make([][]Purchase, 0, len(order))
	for _, c := range order {
		out = append(out, byCustomer[c])
	}
	return out
}

func TestOnlineRetail(t *testing.T) {
	hs := loadRetail(t)
	e := newEngine(t, Config{MinSupport: 10})
	m := e.Build(seqOf(hs))
	st := m.Stats()
	t.Logf("customers %d, purchases %d, products %d (tracked %d), pairs %d, rules %d",
		st.Profiles, st.Purchases, st.Products, st.Tracked, st.Pairs, st.Rules)
	top := m.Top(10)
	if len(top) < 10 {
		t.Fatalf("only %d rules", len(top))
	}
	for _, r := range top {
		t.Logf("%s (%s) → %s (%s): pair %d, support %d/%d, confidence %.2f, lift %.1f",
			m.Name(r.X), r.X, m.Name(r.Y), r.Y, r.Pair, r.SupportX, r.SupportY, r.Confidence, r.Lift)
		if r.X == r.Y || r.Lift <= 1 || r.Pair < 10 || r.Confidence > 1 {
			t.Errorf("implausible rule %+v", r)
		}
	}
	// The best rule's antecedent, just bought, is not offered again and
	// yields the rule's consequent.
	now := time.Date(2010, 12, 24, 0, 0, 0, 0, time.UTC)
	offers := m.Recommend([]Purchase{{Product: top[0].X, At: now.Add(-time.Hour)}}, now)
	t.Logf("offers after %s: %+v", top[0].X, offers)
	if len(offers) == 0 || offers[0].Product == top[0].X {
		t.Errorf("offers = %+v", offers)
	}
}
