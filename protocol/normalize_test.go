package protocol

import (
	"testing"
	"time"
)

func TestNormalizePhone(t *testing.T) {
	tests := []struct {
		name, in, cc string
		want         string
		ok           bool
	}{
		{"e164 kept", "+15551234567", "", "+15551234567", true},
		{"separators removed", "+1 (555) 123-4567", "", "+15551234567", true},
		{"dots and slashes", "+39 02/1234.5678", "", "+390212345678", true},
		{"tab separator", "+44\t7700\t900123", "", "+447700900123", true},
		{"double zero prefix", "0044 7700 900123", "", "+447700900123", true},
		{"national with default cc", "333 123 4567", "39", "+393331234567", true},
		{"trunk zero dropped", "07700 900123", "44", "+447700900123", true},
		{"only one trunk zero dropped", "0012345678", "", "+12345678", true},
		{"national without default cc", "333 123 4567", "", "3331234567", false},
		{"extension cut", "+1 555 123 4567 ext. 89", "", "+15551234567", true},
		{"x extension cut", "+1 555 123 4567x89", "", "+15551234567", true},
		{"semicolon cut", "+15551234567;ext=1", "", "+15551234567", true},
		{"too short", "+1234567", "", "+1234567", false},
		{"shortest valid", "+12345678", "", "+12345678", true},
		{"longest valid", "+123456789012345", "", "+123456789012345", true},
		{"too long", "+1234567890123456", "", "+1234567890123456", false},
		{"zero country code", "+0123456789", "", "+0123456789", false},
		{"empty", "", "", "", false},
		{"empty with cc", "", "39", "+39", false},
		{"letters only", "call me", "39", "+39", false},
		{"leading letters skipped", "tel: +39 333 1234567", "", "+393331234567", true},
		{"second plus ends the number", "+39+333 1234567", "", "+39", false},
		{"plus after digits ends the number", "39+3331234567", "", "39", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NormalizePhone(tt.in, tt.cc)
			if got != tt.want || ok != tt.ok {
				t.Errorf("NormalizePhone(%q, %q) = %q, %t; want %q, %t", tt.in, tt.cc, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNormalizeEmail(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"ana@example.com", "ana@example.com", true},
		{"  Ana.Rossi@Example.COM \n", "ana.rossi@example.com", true},
		{"ANA+tag@sub.example.co.uk", "ana+tag@sub.example.co.uk", true},
		{"ZOË@EXAMPLE.COM", "zoë@example.com", true},
		{"", "", false},
		{"ana", "ana", false},
		{"@example.com", "@example.com", false},
		{"ana@", "ana@", false},
		{"ana@example", "ana@example", false},
		{"ana@.example.com", "ana@.example.com", false},
		{"ana@example.com.", "ana@example.com.", false},
		{"ana@@example.com", "ana@@example.com", false},
		{"a@b@example.com", "a@b@example.com", false},
		{"ana rossi@example.com", "ana rossi@example.com", false},
		{"ana@exa\tmple.com", "ana@exa\tmple.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := NormalizeEmail(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("NormalizeEmail(%q) = %q, %t; want %q, %t", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseTime(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{"2012-12-02T00:30:08.276Z", utc(2012, 12, 2, 0, 30, 8, 276000000), ""},
		{"2012-12-02T00:30:08Z", utc(2012, 12, 2, 0, 30, 8, 0), ""},
		{"2012-12-02T01:30:08+01:00", utc(2012, 12, 2, 0, 30, 8, 0), ""},
		{"2012-12-02T00:30:08.123456789-05:00", utc(2012, 12, 2, 5, 30, 8, 123456789), ""},
		{"2012-12-02T00:30:08.5+0200", utc(2012, 12, 1, 22, 30, 8, 500000000), ""},
		{"2012-12-02T00:30:08", utc(2012, 12, 2, 0, 30, 8, 0), ""},
		{"2012-12-02T00:30:08.25", utc(2012, 12, 2, 0, 30, 8, 250000000), ""},
		{"2012-12-02 00:30:08Z", utc(2012, 12, 2, 0, 30, 8, 0), ""},
		{"2012-12-02 00:30:08.1+00:00", utc(2012, 12, 2, 0, 30, 8, 100000000), ""},
		{"2012-12-02 00:30:08", utc(2012, 12, 2, 0, 30, 8, 0), ""},
		{"2012-12-02", utc(2012, 12, 2, 0, 0, 0, 0), ""},
		{"1970-01-01T00:00:00Z", utc(1970, 1, 1, 0, 0, 0, 0), ""},
		{"9999-12-31T23:59:59Z", utc(9999, 12, 31, 23, 59, 59, 0), ""},
		{"1969-12-31T23:59:59Z", time.Time{}, "date out of range"},
		{"0001-01-01T00:00:00Z", time.Time{}, "date out of range"},
		{"9999-12-31T23:00:00-05:00", time.Time{}, "date out of range"},
		{"1970-01-01T00:30:00+01:00", time.Time{}, "date out of range"},
		{"1969-12-31T23:30:00-01:00", utc(1970, 1, 1, 0, 30, 0, 0), ""},
		{"", time.Time{}, "not an ISO-8601 date"},
		{"yesterday", time.Time{}, "not an ISO-8601 date"},
		{"1354408208", time.Time{}, "not an ISO-8601 date"},
		{"2012-13-02T00:30:08Z", time.Time{}, "not an ISO-8601 date"},
		{"2012-02-30", time.Time{}, "not an ISO-8601 date"},
		{"2012-12-02T25:30:08Z", time.Time{}, "not an ISO-8601 date"},
		{"2012-12-02T00:30:08ZZ", time.Time{}, "not an ISO-8601 date"},
		{"Sun, 02 Dec 2012 00:30:08 GMT", time.Time{}, "not an ISO-8601 date"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTime(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseTime(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				if !got.IsZero() {
					t.Errorf("ParseTime(%q) returned %v with an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTime(%q): %v", tt.in, err)
			}
			if !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Errorf("ParseTime(%q) = %v (%v); want %v UTC", tt.in, got, got.Location(), tt.want)
			}
		})
	}
}
