package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.conf")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`k = "a \"b\" \\" # c`))
	f.Fuzz(func(t *testing.T, b []byte) {
		settings, err := Parse(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error %q does not name a line", err)
			}
			return
		}
		lines := strings.Count(string(b), "\n") + 1
		seen := map[string]bool{}
		last := 0
		for _, s := range settings {
			if !validKey(s.Key) || s.Key == ConfigFlag || seen[s.Key] {
				t.Fatalf("bad key %q accepted", s.Key)
			}
			seen[s.Key] = true
			if s.Line <= last || s.Line > lines {
				t.Fatalf("line %d out of order or range (previous %d, lines %d)", s.Line, last, lines)
			}
			last = s.Line
		}
	})
}
