package conf

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
)

const redacted = "[redacted]"

// Secret is a flag value for write keys, tokens and passwords. It prints as
// "[redacted]" (or "" when empty) through String, fmt, slog and text
// marshalling; Reveal returns the secret itself.
type Secret string

// Set implements flag.Value.
func (s *Secret) Set(v string) error { *s = Secret(v); return nil }

// String implements flag.Value and fmt.Stringer without revealing the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue keeps slog from printing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders from printing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret.
func (s Secret) Reveal() string { return string(s) }

// ErrBytes is wrapped by errors from parsing a byte size.
var ErrBytes = errors.New("invalid byte size")

// Bytes is a byte count flag value. It parses a non-negative integer with an
// optional unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB
// (powers of 1024), case-insensitive, with optional blanks before the unit:
// "1048576", "512MiB", "1GB", "64 KiB".
type Bytes int64

var byteUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"tb":  1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// ParseBytes parses a byte size as described for Bytes.
func ParseBytes(s string) (Bytes, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%w %q: want a number with an optional unit such as MiB or GB", ErrBytes, s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %q: number out of range", ErrBytes, s)
	}
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	mul, ok := byteUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%w %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", ErrBytes, s, strings.TrimSpace(t[i:]))
	}
	if n > math.MaxInt64/mul {
		return 0, fmt.Errorf("%w %q: out of range", ErrBytes, s)
	}
	return Bytes(n * mul), nil
}

// Set implements flag.Value.
func (b *Bytes) Set(s string) error {
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// String prints the size with the largest unit that divides it exactly,
// binary units first: 536870912 is "512MiB", 1000000000 "1GB", 1000 "1KB",
// 1023 "1023".
func (b Bytes) String() string {
	n := int64(b)
	if n == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		mul  int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if n%u.mul == 0 {
			return strconv.FormatInt(n/u.mul, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// Int64 returns the size in bytes.
func (b Bytes) Int64() int64 { return int64(b) }

// SplitList splits a comma-separated flag value into its trimmed, non-empty
// items; nil for an empty value.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
