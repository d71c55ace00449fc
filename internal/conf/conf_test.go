package conf

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testFlags mirrors what cmd/edge-agent defines.
type testFlags struct {
	fs       *flag.FlagSet
	config   string
	httpAddr string
	quota    Bytes
	writeKey Secret
	debug    bool
	flush    time.Duration
	tenant   string
}

type values struct {
	HTTPAddr string
	Quota    int64
	WriteKey string
	Debug    bool
	Flush    time.Duration
	Tenant   string
}

func newTestFlags() *testFlags {
	f := &testFlags{fs: flag.NewFlagSet("edge-agent", flag.ContinueOnError), quota: 1 << 30}
	f.fs.SetOutput(io.Discard)
	f.fs.StringVar(&f.config, "config", "", "config `file`")
	f.fs.StringVar(&f.httpAddr, "http-addr", ":8080", "HTTP listen `address`")
	f.fs.Var(&f.quota, "quota-bytes", "disk quota of the queue")
	f.fs.Var(&f.writeKey, "write-key", "Segment write key")
	f.fs.BoolVar(&f.debug, "debug", false, "debug logging")
	f.fs.DurationVar(&f.flush, "flush-interval", time.Second, "flush interval")
	f.fs.StringVar(&f.tenant, "tenant", "", "tenant id")
	return f
}

func (f *testFlags) values() values {
	return values{f.httpAddr, int64(f.quota), f.writeKey.Reveal(), f.debug, f.flush, f.tenant}
}

// clearEnv makes sure no UNICO_* variable of the machine leaks into a test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "UNICO_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func TestGoodConfigs(t *testing.T) {
	clearEnv(t)
	defaults := newTestFlags().values()
	tests := map[string]values{
		"full.good.conf": {
			HTTPAddr: ":9090", Quota: 512 << 20, WriteKey: "s3cret # not a comment",
			Debug: true, Flush: 250 * time.Millisecond, Tenant: "acme",
		},
		"empty.good.conf": defaults,
	}
	files, err := filepath.Glob("testdata/*.good.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Fatalf("testdata has %d good files, the table %d", len(files), len(tests))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want, ok := tests[filepath.Base(file)]
			if !ok {
				t.Fatalf("no expectation for %s", file)
			}
			f := newTestFlags()
			if err := Load(f.fs, []string{"--config", file}, "UNICO"); err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(want, f.values()); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBadConfigs(t *testing.T) {
	clearEnv(t)
	tests := map[string]struct {
		msg  string
		want error
	}{
		"unknown_key.bad.conf":  {`line 4: unknown key "htp-addr"`, ErrUnknownKey},
		"repeated.bad.conf":     {`line 2: syntax error: key "http-addr" repeated (first on line 1)`, ErrSyntax},
		"no_separator.bad.conf": {`line 1: syntax error: expected "key = value" or "key: value"`, ErrSyntax},
		"bad_bytes.bad.conf":    {`line 1: key "quota-bytes": invalid value "12 parsecs": invalid byte size "12 parsecs": unknown unit "parsecs"`, ErrInvalidValue},
		"bad_bool.bad.conf":     {`line 1: key "debug": invalid value "maybe": parse error`, ErrInvalidValue},
		"open_quote.bad.conf":   {`line 1: syntax error: key "write-key": missing closing quote`, ErrSyntax},
		"after_quote.bad.conf":  {`line 1: syntax error: key "write-key": text after the closing quote`, ErrSyntax},
		"config_key.bad.conf":   {`line 1: syntax error: key "config" cannot be set in a config file`, ErrSyntax},
		"empty_key.bad.conf":    {`line 1: syntax error: invalid key ""`, ErrSyntax},
		"not_utf8.bad.conf":     {`line 2: syntax error: not valid UTF-8`, ErrSyntax},
		"bad_duration.bad.conf": {`line 1: key "flush-interval": invalid value "10 parsecs": parse error`, ErrInvalidValue},
	}
	files, err := filepath.Glob("testdata/*.bad.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Fatalf("testdata has %d bad files, the table %d", len(files), len(tests))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			tt, ok := tests[filepath.Base(file)]
			if !ok {
				t.Fatalf("no expectation for %s", file)
			}
			f := newTestFlags()
			err := Load(f.fs, []string{"--config", file}, "UNICO")
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			prefix := "config file " + file + " " + tt.msg
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error\n got %q\nwant prefix %q", err, prefix)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "edge.conf")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := "http-addr = :1111\ntenant = from-file\nquota-bytes = 1GB\nflush-interval = 2s\n"
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want values
	}{
		{
			name: "defaults only",
			want: values{HTTPAddr: ":8080", Quota: 1 << 30, Flush: time.Second},
		},
		{
			name: "file over defaults",
			args: []string{"--config", "FILE"},
			want: values{HTTPAddr: ":1111", Quota: 1e9, Flush: 2 * time.Second, Tenant: "from-file"},
		},
		{
			name: "env over file",
			env:  map[string]string{"UNICO_HTTP_ADDR": ":2222", "UNICO_WRITE_KEY": "k1"},
			args: []string{"--config", "FILE"},
			want: values{HTTPAddr: ":2222", Quota: 1e9, Flush: 2 * time.Second, Tenant: "from-file", WriteKey: "k1"},
		},
		{
			name: "flags over env over file",
			env:  map[string]string{"UNICO_HTTP_ADDR": ":2222", "UNICO_TENANT": "from-env"},
			args: []string{"--config", "FILE", "--http-addr", ":3333", "--quota-bytes", "5MiB"},
			want: values{HTTPAddr: ":3333", Quota: 5 << 20, Flush: 2 * time.Second, Tenant: "from-env"},
		},
		{
			name: "config file named by env",
			env:  map[string]string{"UNICO_CONFIG": "FILE"},
			want: values{HTTPAddr: ":1111", Quota: 1e9, Flush: 2 * time.Second, Tenant: "from-file"},
		},
		{
			name: "flag set to its default still wins",
			env:  map[string]string{"UNICO_HTTP_ADDR": ":2222"},
			args: []string{"--http-addr", ":8080"},
			want: values{HTTPAddr: ":8080", Quota: 1 << 30, Flush: time.Second},
		},
		{
			name: "empty env value is a value",
			env:  map[string]string{"UNICO_TENANT": ""},
			args: []string{"--config", "FILE"},
			want: values{HTTPAddr: ":1111", Quota: 1e9, Flush: 2 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			path := writeFile(t, file)
			for k, v := range tt.env {
				if v == "FILE" {
					v = path
				}
				t.Setenv(k, v)
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				if a == "FILE" {
					a = path
				}
				args[i] = a
			}
			f := newTestFlags()
			if err := Load(f.fs, args, "UNICO"); err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.want, f.values()); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string
	}{
		{
			name: "bad env value",
			env:  map[string]string{"UNICO_QUOTA_BYTES": "lots"},
			want: `env UNICO_QUOTA_BYTES: invalid value "lots": invalid byte size "lots"`,
		},
		{
			name: "bad flag",
			args: []string{"--quota-bytes", "x"},
			want: `invalid value "x" for flag -quota-bytes`,
		},
		{
			name: "unknown flag",
			args: []string{"--htp-addr", "x"},
			want: `flag provided but not defined: -htp-addr`,
		},
		{
			name: "bad file value hidden by env is still reported",
			file: "flush-interval = soon\n",
			env:  map[string]string{"UNICO_FLUSH_INTERVAL": "3s"},
			want: `config file FILE line 1: key "flush-interval": invalid value "soon"`,
		},
		{
			name: "missing file",
			args: []string{"--config", "/nonexistent/edge.conf"},
			want: `config file: open /nonexistent/edge.conf`,
		},
		{
			name: "two bad env values are both reported",
			env:  map[string]string{"UNICO_DEBUG": "perhaps", "UNICO_FLUSH_INTERVAL": "x"},
			want: "env UNICO_DEBUG: invalid value \"perhaps\": parse error\nenv UNICO_FLUSH_INTERVAL: invalid value \"x\": parse error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			args := tt.args
			want := tt.want
			if tt.file != "" {
				path := writeFile(t, tt.file)
				args = append([]string{"--config", path}, args...)
				want = strings.ReplaceAll(want, "FILE", path)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			err := Load(newTestFlags().fs, args, "UNICO")
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error\n got %v\nwant prefix %q", err, want)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	tests := []struct{ prefix, name, want string }{
		{"UNICO", "http-addr", "UNICO_HTTP_ADDR"},
		{"UNICO_", "http-addr", "UNICO_HTTP_ADDR"},
		{"", "quota-bytes", "QUOTA_BYTES"},
		{"UNICO", "data-dir", "UNICO_DATA_DIR"},
	}
	for _, tt := range tests {
		if got := EnvName(tt.prefix, tt.name); got != tt.want {
			t.Errorf("EnvName(%q, %q) = %q, want %q", tt.prefix, tt.name, got, tt.want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    Bytes
		wantErr bool
		str     string
	}{
		{in: "1048576", want: 1 << 20, str: "1MiB"},
		{in: "512MiB", want: 512 << 20, str: "512MiB"},
		{in: "512mib", want: 512 << 20, str: "512MiB"},
		{in: "1GB", want: 1e9, str: "1GB"},
		{in: "64 KiB", want: 64 << 10, str: "64KiB"},
		{in: "1000", want: 1000, str: "1KB"},
		{in: "1023B", want: 1023, str: "1023"},
		{in: "0", want: 0, str: "0"},
		{in: "2TiB", want: 2 << 40, str: "2TiB"},
		{in: "8388607TiB", want: 8388607 << 40, str: "8388607TiB"},
		{in: "8388608TiB", wantErr: true},
		{in: "99999999999999999999", wantErr: true},
		{in: "", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "1.5GiB", wantErr: true},
		{in: "1 GiBs", wantErr: true},
		{in: "1M", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBytes(tt.in)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrBytes) {
					t.Fatalf("ParseBytes(%q) = %d, %v; want an ErrBytes error", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
			if got.String() != tt.str {
				t.Errorf("String() = %q, want %q", got.String(), tt.str)
			}
			back, err := ParseBytes(got.String())
			if err != nil || back != got {
				t.Errorf("round trip of %q: %d, %v", got.String(), back, err)
			}
		})
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	s := Secret("hunter2")
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("cfg", "key", s)
	text, _ := s.MarshalText()
	outs := map[string]string{
		"String": s.String(),
		"%v":     fmt.Sprintf("%v", s),
		//lint:ignore S1025 the test checks what the %s verb prints
		"%s":   fmt.Sprintf("%s", s),
		"%#v":  fmt.Sprintf("%#v", s),
		"%+v":  fmt.Sprintf("%+v", struct{ K Secret }{s}),
		"slog": logBuf.String(),
		"text": string(text),
	}
	for name, out := range outs {
		if strings.Contains(out, "hunter2") || !strings.Contains(out, "[redacted]") {
			t.Errorf("%s printed %q", name, out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Errorf("Reveal() = %q", s.Reveal())
	}
	if Secret("").String() != "" {
		t.Errorf("empty secret prints %q", Secret("").String())
	}
}

func TestUsage(t *testing.T) {
	f := newTestFlags()
	var out bytes.Buffer
	f.fs.SetOutput(&out)
	f.fs.Usage = Usage(f.fs, "UNICO")
	if err := Load(f.fs, []string{"--help"}, "UNICO"); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Load(--help) = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{
		"  --http-addr address\n      HTTP listen address\n      env UNICO_HTTP_ADDR, default \":8080\"\n",
		"  --quota-bytes value\n      disk quota of the queue\n      env UNICO_QUOTA_BYTES, default \"1GiB\"\n",
		"  --config file\n      config file\n      env UNICO_CONFIG\n",
		"  --write-key value\n      Segment write key\n      env UNICO_WRITE_KEY\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q; got:\n%s", want, out.String())
		}
	}
}

func TestParseQuoting(t *testing.T) {
	tests := []struct {
		line string
		want string
	}{
		{`k = "a \"b\" c"`, `a "b" c`},
		{`k = "ends in backslash \\"`, `ends in backslash \`},
		{`k = "x" # note`, `x`},
		{`k = ""`, ``},
		{`k =`, ``},
		{`k = a#b`, `a#b`},
		{"k = a\t# tab comment", `a`},
		{`k: mqtt://host:1883`, `mqtt://host:1883`},
		{`k = mqtt://host:1883`, `mqtt://host:1883`},
	}
	for _, tt := range tests {
		s, err := Parse([]byte(tt.line))
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.line, err)
			continue
		}
		if diff := cmp.Diff([]Setting{{Key: "k", Value: tt.want, Line: 1}}, s); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tt.line, diff)
		}
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	for _, line := range []string{
		"http-addr :8080",
		"k:v",
		"just-a-word",
		"two words = x",
		"-k = v",
	} {
		if s, err := Parse([]byte(line)); err == nil || !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, %v; want a syntax error", line, s, err)
		}
	}
}

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{"": nil, " , ": nil, "a": {"a"}, " a, b ,,c ": {"a", "b", "c"}} {
		if got := SplitList(in); !slices.Equal(got, want) {
			t.Errorf("SplitList(%q) = %q, want %q", in, got, want)
		}
	}
}
