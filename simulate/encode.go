package simulate

import (
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// appendStr appends s as a JSON string. Control characters are escaped and
// invalid UTF-8 becomes U+FFFD, so any input yields valid JSON.
func appendStr(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\t':
				b = append(b, '\\', 't')
			case '\r':
				b = append(b, '\\', 'r')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendKeyStr appends `,"key":"value"`; key must need no escaping.
func appendKeyStr(b []byte, key, val string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendStr(b, val)
}

// appendKeyInt appends `,"key":n`.
func appendKeyInt(b []byte, key string, n int64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, n, 10)
}

// appendMoney appends an amount in minor units as a decimal number with two
// decimals ("12.05").
func appendMoney(b []byte, cents int64) []byte {
	if cents < 0 {
		b = append(b, '-')
		cents = -cents
	}
	b = strconv.AppendInt(b, cents/100, 10)
	r := cents % 100
	return append(b, '.', byte('0'+r/10), byte('0'+r%10))
}

// Cents is an amount in minor units that marshals to JSON as a decimal
// number with two decimals.
type Cents int64

// MarshalJSON implements json.Marshaler.
func (c Cents) MarshalJSON() ([]byte, error) { return appendMoney(nil, int64(c)), nil }

// Float returns the amount in major units.
func (c Cents) Float() float64 { return float64(c) / 100 }

// UnmarshalJSON implements json.Unmarshaler.
func (c *Cents) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("amount %s: %w", b, err)
	}
	*c = Cents(math.Round(f * 100))
	return nil
}
