package simulate

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// BasketCategory is the product category given to lines of loaded baskets,
// whose source has no categories.
const BasketCategory = "general"

// BasketLine is one line of a real invoice.
type BasketLine struct {
	StockCode   string
	Description string
	Quantity    int
	// UnitPrice is in minor units.
	UnitPrice int64
}

// Basket is the set of lines of one invoice.
type Basket struct {
	Invoice string
	Lines   []BasketLine
}

// ErrBadBaskets is wrapped by errors about a malformed baskets file.
var ErrBadBaskets = errors.New("bad baskets file")

// basketColumns are the columns of the Online Retail CSV format.
var basketColumns = []string{"InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"}

// LoadBaskets reads baskets from a file in the Online Retail CSV format.
func LoadBaskets(path string) ([]Basket, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load baskets: %w", err)
	}
	defer f.Close()
	bs, err := ReadBaskets(f)
	if err != nil {
		return nil, fmt.Errorf("load baskets %s: %w", path, err)
	}
	return bs, nil
}

// ReadBaskets reads the Online Retail CSV format (columns InvoiceNo,
// StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
// Country, with a header line). Lines of one invoice form a basket, in the
// order invoices first appear. Cancellations (InvoiceNo starting with "C"),
// lines with a quantity or price not above zero, and baskets left empty are
// skipped.
func ReadBaskets(r io.Reader) ([]Basket, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(basketColumns)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w: %w", ErrBadBaskets, err)
	}
	for i, c := range basketColumns {
		if strings.TrimPrefix(strings.TrimSpace(head[i]), "\ufeff") != c {
			return nil, fmt.Errorf("header column %d is %q, want %q: %w", i+1, head[i], c, ErrBadBaskets)
		}
	}
	var out []Basket
	index := make(map[string]int)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadBaskets, err)
		}
		line, _ := cr.FieldPos(0)
		inv := strings.TrimSpace(rec[0])
		if inv == "" || strings.HasPrefix(inv, "C") {
			continue
		}
		qty, err := strconv.Atoi(strings.TrimSpace(rec[3]))
		if err != nil {
			return nil, fmt.Errorf("line %d: Quantity %q: %w", line, rec[3], ErrBadBaskets)
		}
		price, err := strconv.ParseFloat(strings.TrimSpace(rec[5]), 64)
		if err != nil || math.IsNaN(price) || math.IsInf(price, 0) {
			return nil, fmt.Errorf("line %d: UnitPrice %q: %w", line, rec[5], ErrBadBaskets)
		}
		cents := int64(math.Round(price * 100))
		if qty <= 0 || cents <= 0 || qty > 1_000_000 || cents > 100_000_000 {
			continue
		}
		i, ok := index[inv]
		if !ok {
			i = len(out)
			index[inv] = i
			out = append(out, Basket{Invoice: inv})
		}
		out[i].Lines = append(out[i].Lines, BasketLine{
			StockCode:   strings.TrimSpace(rec[1]),
			Description: strings.TrimSpace(rec[2]),
			Quantity:    qty,
			UnitPrice:   cents,
		})
	}
	return out, nil
}
