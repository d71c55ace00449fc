package protocol

import "strings"

// NormalizePhone returns phone in E.164 form ("+15551234567") where it can:
// separators are removed, a leading "00" becomes "+", and a national number
// (no "+") gets defaultCC (the country calling code without "+", such as "1"
// or "39") with one leading trunk "0" dropped. When the result is not 8 to 15
// digits, or there is no country code to apply, it returns the bare digits
// (with "+" if the input had one) and false.
func NormalizePhone(phone, defaultCC string) (string, bool) {
	var b strings.Builder
	b.Grow(len(phone) + 3)
	plus := false
	started := false
	for i := 0; i < len(phone); i++ {
		c := phone[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
			started = true
		case c == '+' && !started && !plus:
			plus = true
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/' || c == '\t':
		default:
			// Extensions and letters: stop at "x", "ext", ";" etc.
			if started {
				i = len(phone)
			}
		}
	}
	digits := b.String()
	if !plus && strings.HasPrefix(digits, "00") {
		plus = true
		digits = digits[2:]
	}
	if !plus {
		if defaultCC == "" {
			return digits, false
		}
		digits = defaultCC + strings.TrimPrefix(digits, "0")
		plus = true
	}
	if len(digits) < 8 || len(digits) > 15 || digits[0] == '0' {
		return "+" + digits, false
	}
	return "+" + digits, true
}

// NormalizeEmail trims and lower-cases an e-mail address and reports whether
// it looks like one (a local part, one "@", a domain with a dot).
func NormalizeEmail(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	at := strings.IndexByte(s, '@')
	if at <= 0 || at != strings.LastIndexByte(s, '@') || at == len(s)-1 {
		return s, false
	}
	dom := s[at+1:]
	if !strings.Contains(dom, ".") || strings.HasPrefix(dom, ".") || strings.HasSuffix(dom, ".") || strings.ContainsAny(s, " \t\r\n") {
		return s, false
	}
	return s, true
}
