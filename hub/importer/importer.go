// Package importer turns customer records from a CRM or e-commerce export
// (CSV with a header row, or JSON Lines) into identify events, so that they
// go through the same identity resolution as live traffic.
//
// A mapping names, for each source column (or top-level JSON key), where its
// value goes: an identifier type ("email", "phone", "loyalty_id",
// "user_id", …) or a trait ("trait:first_name"). Values are normalised as the
// edge normalises them (e-mails lower-cased, phones to E.164). Each event's
// id is derived from the record's content, so importing the same file twice
// changes nothing.
package importer

import (
	"bufio"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// MaxLineBytes bounds one JSON Lines record.
const MaxLineBytes = 1 << 20

// Target is where one source field goes.
type Target struct {
	// Identifier is the identifier type, or empty for a trait.
	Identifier string
	// Trait is the trait name, or empty for an identifier.
	Trait string
}

// Mapping maps source fields to targets.
type Mapping map[string]Target

// ParseMapping parses "col=email,phone_no=phone,first=trait:first_name".
func ParseMapping(s string) (Mapping, error) {
	m := Mapping{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		src, dst, ok := strings.Cut(part, "=")
		src, dst = strings.TrimSpace(src), strings.TrimSpace(dst)
		if !ok || src == "" || dst == "" {
			return nil, fmt.Errorf("map %q: want column=target", part)
		}
		if name, ok := strings.CutPrefix(dst, "trait:"); ok {
			if name == "" {
				return nil, fmt.Errorf("map %q: empty trait name", part)
			}
			m[src] = Target{Trait: name}
			continue
		}
		if !protocol.ValidName(dst) {
			return nil, fmt.Errorf("map %q: invalid identifier type %q", part, dst)
		}
		m[src] = Target{Identifier: dst}
	}
	if len(m) == 0 {
		return nil, errors.New("map: empty")
	}
	hasID := false
	for _, t := range m {
		hasID = hasID || t.Identifier != ""
	}
	if !hasID {
		return nil, errors.New("map: no column maps to an identifier")
	}
	return m, nil
}

// Options configures a Reader.
type Options struct {
	Mapping Mapping
	// Format is "csv" or "jsonl".
	Format string
	// Source names the import (file name); it is part of event ids.
	Source string
	// DefaultCountryCode normalises national phone numbers.
	DefaultCountryCode string
	Tenant             string
	Now                func() time.Time
}

// Reader reads records and yields events.
type Reader struct {
	opts   Options
	csv    *csv.Reader
	header []string
	lines  *bufio.Scanner
	n      int
	cols   []string // mapped columns, sorted
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rd := &Reader{opts: opts}
	for col := range opts.Mapping {
		rd.cols = append(rd.cols, col)
	}
	slices.Sort(rd.cols)
	switch opts.Format {
	case "csv":
		rd.csv = csv.NewReader(r)
		rd.csv.ReuseRecord = false
		h, err := rd.csv.Read()
		if err != nil {
			return nil, fmt.Errorf("csv header: %w", err)
		}
		for i := range h {
			h[i] = strings.TrimSpace(strings.TrimPrefix(h[i], "\ufeff"))
		}
		rd.header = h
		for col := range opts.Mapping {
			found := false
			for _, c := range h {
				found = found || c == col
			}
			if !found {
				return nil, fmt.Errorf("map: column %q is not in the header %v", col, h)
			}
		}
	case "jsonl":
		rd.lines = bufio.NewScanner(r)
		rd.lines.Buffer(make([]byte, 64<<10), MaxLineBytes)
	default:
		return nil, fmt.Errorf("format %q: want csv or jsonl", opts.Format)
	}
	return rd, nil
}

// ErrSkip is returned (wrapped) for a record without any identifier; the
// caller counts it and goes on.
var ErrSkip = errors.New("record has no identifier")

// Next returns the event of the next record, io.EOF at the end, or an
// error naming the record (wrapping ErrSkip for records to skip).
func (rd *Reader) Next() (*protocol.Event, error) {
	fields := map[string]string{}
	rd.n++
	switch {
	case rd.csv != nil:
		rec, err := rd.csv.Read()
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", rd.n, err)
		}
		for i, v := range rec {
			if i < len(rd.header) {
				fields[rd.header[i]] = v
			}
		}
	default:
		for {
			if !rd.lines.Scan() {
				if err := rd.lines.Err(); err != nil {
					return nil, fmt.Errorf("record %d: %w", rd.n, err)
				}
				return nil, io.EOF
			}
			if strings.TrimSpace(rd.lines.Text()) != "" {
				break
			}
		}
		var obj map[string]any
		if err := json.Unmarshal(rd.lines.Bytes(), &obj); err != nil {
			return nil, fmt.Errorf("record %d: invalid JSON: %w", rd.n, err)
		}
		for k, v := range obj {
			switch x := v.(type) {
			case string:
				fields[k] = x
			case float64, bool:
				fields[k] = fmt.Sprint(x)
			}
		}
	}
	return rd.event(fields)
}

func (rd *Reader) event(fields map[string]string) (*protocol.Event, error) {
	now := rd.opts.Now().UTC()
	e := &protocol.Event{
		Type: protocol.TypeIdentify, Name: "import", Channel: protocol.ChannelImport,
		Source:     protocol.Source{Tenant: rd.opts.Tenant, Site: "import"},
		OccurredAt: now, ReceivedAt: now,
	}
	h := sha256.New()
	h.Write([]byte(rd.opts.Source))
	for _, col := range rd.cols {
		t := rd.opts.Mapping[col]
		v := strings.TrimSpace(fields[col])
		if v == "" {
			continue
		}
		h.Write([]byte{0})
		h.Write([]byte(col))
		h.Write([]byte{0})
		h.Write([]byte(v))
		if t.Trait != "" {
			if e.Traits == nil {
				e.Traits = map[string]any{}
			}
			e.Traits[t.Trait] = v
			continue
		}
		switch t.Identifier {
		case protocol.IDEmail:
			var ok bool
			if v, ok = protocol.NormalizeEmail(v); !ok {
				continue
			}
		case protocol.IDPhone:
			v, _ = protocol.NormalizePhone(v, rd.opts.DefaultCountryCode)
		}
		if len(v) > protocol.MaxIdentifierLen {
			continue
		}
		e.AddIdentifier(t.Identifier, v)
	}
	if len(e.Identifiers) == 0 {
		return nil, fmt.Errorf("record %d: %w", rd.n, ErrSkip)
	}
	e.ID = "imp_" + hex.EncodeToString(h.Sum(nil)[:16])
	return e, nil
}

// Records returns how many records were read.
func (rd *Reader) Records() int { return rd.n }
