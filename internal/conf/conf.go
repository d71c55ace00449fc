// Package conf loads the configuration of Unico's daemons from four sources
// in order of increasing precedence: flag defaults, an optional config file,
// environment variables and command-line flags.
//
// The flags of a *flag.FlagSet are the single schema: a config file and the
// environment can only set flags that are defined, under the same names.
//
// # Config file format
//
// A config file is UTF-8 text with one setting per line, "key = value" or
// "key: value", where key is a flag name without leading dashes
// (http-addr = :8080). Blank lines and lines whose first non-blank character
// is '#' are ignored. An unquoted value ends at the first " #" or "\t#"
// (a trailing comment) and has surrounding blanks removed. A value in double
// quotes is read with Go string syntax ("a \"b\"", "\t"), and nothing but a
// comment may follow it. Unknown keys, repeated keys, a "config" key, lines
// without a separator and values a flag rejects are errors that name the
// line. JSON and YAML files are not supported: the flat format covers every
// flag type and needs no dependency.
package conf

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ConfigFlag is the name of the flag that names the config file.
const ConfigFlag = "config"

// MaxFileBytes bounds the size of a config file.
const MaxFileBytes = 1 << 20

// ErrSyntax is wrapped by errors about the config file's syntax.
var ErrSyntax = errors.New("syntax error")

// ErrUnknownKey is wrapped by errors about a config file key or an
// environment variable that names no flag.
var ErrUnknownKey = errors.New("unknown key")

// ErrInvalidValue is wrapped by errors about a value a flag rejects.
var ErrInvalidValue = errors.New("invalid value")

// Setting is one "key = value" line of a config file.
type Setting struct {
	Key   string
	Value string
	Line  int
}

// EnvName returns the environment variable that sets flag name: the prefix,
// an underscore unless the prefix is empty or already ends in one, then the
// name in upper case with dashes turned into underscores. EnvName("UNICO",
// "http-addr") is "UNICO_HTTP_ADDR".
func EnvName(prefix, name string) string {
	n := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	if prefix == "" {
		return n
	}
	if !strings.HasSuffix(prefix, "_") {
		prefix += "_"
	}
	return prefix + n
}

// Load parses args into fs, then sets every flag that was not given on the
// command line from, in order of increasing precedence, the config file named
// by the "config" flag (when fs defines it and it is set on the command line
// or in the environment) and the environment variable EnvName(envPrefix,
// flag). The result is defaults < file < environment < flags.
//
// Each flag's Set is called at most once by Load beyond command-line parsing,
// with the winning value, so flags that accumulate values are not doubled. A
// file value overridden by the environment is still checked when the flag's
// value is a pointer type (all standard flag types, Bytes and Secret), by
// setting a fresh value of the same type.
//
// Errors name the source and the key: `config file app.conf line 3: unknown
// key "htp-addr"`, `env UNICO_QUOTA_BYTES: invalid value "x": …`.
func Load(fs *flag.FlagSet, args []string, envPrefix string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	onCmdline := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCmdline[f.Name] = true })

	if cf := fs.Lookup(ConfigFlag); cf != nil && !onCmdline[ConfigFlag] {
		if v, ok := os.LookupEnv(EnvName(envPrefix, ConfigFlag)); ok {
			if err := fs.Set(ConfigFlag, v); err != nil {
				return fmt.Errorf("env %s: %w %q: %w", EnvName(envPrefix, ConfigFlag), ErrInvalidValue, v, err)
			}
			onCmdline[ConfigFlag] = true // handled; never set again below
		}
	}

	var fileVals map[string]Setting
	var fileName string
	if cf := fs.Lookup(ConfigFlag); cf != nil && cf.Value.String() != "" {
		fileName = cf.Value.String()
		settings, err := ReadFile(fileName)
		if err != nil {
			return err
		}
		fileVals = make(map[string]Setting, len(settings))
		for _, s := range settings {
			if fs.Lookup(s.Key) == nil {
				return fmt.Errorf("config file %s line %d: %w %q", fileName, s.Line, ErrUnknownKey, s.Key)
			}
			fileVals[s.Key] = s
		}
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if onCmdline[f.Name] || f.Name == ConfigFlag {
			return
		}
		env := EnvName(envPrefix, f.Name)
		ev, inEnv := os.LookupEnv(env)
		fv, inFile := fileVals[f.Name]
		if inFile && inEnv {
			if err := checkValue(f.Value, fv.Value); err != nil {
				errs = append(errs, fmt.Errorf("config file %s line %d: key %q: %w %q: %w", fileName, fv.Line, f.Name, ErrInvalidValue, fv.Value, err))
			}
		}
		switch {
		case inEnv:
			if err := f.Value.Set(ev); err != nil {
				errs = append(errs, fmt.Errorf("env %s: %w %q: %w", env, ErrInvalidValue, printable(f, ev), err))
			}
		case inFile:
			if err := f.Value.Set(fv.Value); err != nil {
				errs = append(errs, fmt.Errorf("config file %s line %d: key %q: %w %q: %w", fileName, fv.Line, f.Name, ErrInvalidValue, printable(f, fv.Value), err))
			}
		}
	})
	return errors.Join(errs...)
}

// printable hides the value of a Secret flag in error messages.
func printable(f *flag.Flag, v string) string {
	if _, ok := f.Value.(*Secret); ok {
		return redacted
	}
	return v
}

// checkValue reports whether a fresh value of v's type accepts s, without
// touching v. Values of non-pointer types are not checked.
func checkValue(v flag.Value, s string) error {
	t := reflect.TypeOf(v)
	if t.Kind() != reflect.Pointer {
		return nil
	}
	fresh, ok := reflect.New(t.Elem()).Interface().(flag.Value)
	if !ok {
		return nil
	}
	return fresh.Set(s)
}

// ReadFile reads and parses a config file.
func ReadFile(name string) ([]Setting, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", name, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", name, MaxFileBytes)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config file %s %w", name, err)
	}
	return s, nil
}

// Parse parses the text of a config file. Errors start with "line N:". It
// checks syntax only: keys are not matched against flags.
func Parse(b []byte) ([]Setting, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("line %d: %w: not valid UTF-8", firstInvalidLine(b), ErrSyntax)
	}
	var out []Setting
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxFileBytes+1)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff"))
		if line == "" || line[0] == '#' {
			continue
		}
		key, rest, ok := splitLine(line)
		if !ok {
			return nil, fmt.Errorf("line %d: %w: expected \"key = value\" or \"key: value\"", n, ErrSyntax)
		}
		if !validKey(key) {
			return nil, fmt.Errorf("line %d: %w: invalid key %q", n, ErrSyntax, key)
		}
		if key == ConfigFlag {
			return nil, fmt.Errorf("line %d: %w: key %q cannot be set in a config file", n, ErrSyntax, key)
		}
		if prev, ok := seen[key]; ok {
			return nil, fmt.Errorf("line %d: %w: key %q repeated (first on line %d)", n, ErrSyntax, key, prev)
		}
		val, err := parseValue(rest)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w: key %q: %w", n, ErrSyntax, key, err)
		}
		seen[key] = n
		out = append(out, Setting{Key: key, Value: val, Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w: %w", n+1, ErrSyntax, err)
	}
	return out, nil
}

// splitLine splits "key = value" and "key: value" (the colon right after the
// key and followed by a blank or the end of the line, as in YAML). rest is
// the trimmed text after the separator.
func splitLine(line string) (key, rest string, ok bool) {
	i := strings.IndexAny(line, "=: \t")
	if i < 0 {
		return "", "", false
	}
	key = line[:i]
	if line[i] == ':' {
		if i+1 < len(line) && line[i+1] != ' ' && line[i+1] != '\t' {
			return "", "", false
		}
		return key, strings.TrimSpace(line[i+1:]), true
	}
	after := strings.TrimLeft(line[i:], " \t")
	if !strings.HasPrefix(after, "=") {
		return "", "", false
	}
	return key, strings.TrimSpace(after[1:]), true
}

func firstInvalidLine(b []byte) int {
	line := 1
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			return line
		}
		if r == '\n' {
			line++
		}
		b = b[size:]
	}
	return line
}

// validKey accepts flag-like names: letters, digits, '-', '_' and '.',
// starting with a letter or digit.
func validKey(k string) bool {
	if k == "" || k[0] == '-' || k[0] == '_' || k[0] == '.' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func parseValue(v string) (string, error) {
	if strings.HasPrefix(v, `"`) {
		// Find the closing quote: the shortest prefix that unquotes.
		for i := 1; i < len(v); i++ {
			if v[i] != '"' || !evenBackslashes(v[1:i]) {
				continue
			}
			s, err := strconv.Unquote(v[:i+1])
			if err != nil {
				return "", fmt.Errorf("bad quoted value: %w", err)
			}
			rest := strings.TrimSpace(v[i+1:])
			if rest != "" && rest[0] != '#' {
				return "", errors.New("text after the closing quote")
			}
			return s, nil
		}
		return "", errors.New("missing closing quote")
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = v[:i]
	}
	if i := strings.Index(v, "\t#"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v), nil
}

// evenBackslashes reports whether s ends in an even number of backslashes,
// so that a quote after it is not escaped.
func evenBackslashes(s string) bool {
	n := 0
	for i := len(s) - 1; i >= 0 && s[i] == '\\'; i-- {
		n++
	}
	return n%2 == 0
}

// PrintUsage writes every flag of fs to w, sorted by name, with its usage
// text, its environment variable and its default value.
func PrintUsage(w io.Writer, fs *flag.FlagSet, envPrefix string) {
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		typ, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if typ != "" {
			head += " " + typ
		}
		fmt.Fprintln(w, head)
		if usage != "" {
			fmt.Fprintf(w, "      %s\n", strings.ReplaceAll(usage, "\n", "\n      "))
		}
		fmt.Fprintf(w, "      env %s", EnvName(envPrefix, f.Name))
		if f.DefValue != "" {
			fmt.Fprintf(w, ", default %q", f.DefValue)
		}
		fmt.Fprintln(w)
	}
}

// Usage returns a function for fs.Usage that prints a usage line naming the
// program and then PrintUsage to fs.Output().
func Usage(fs *flag.FlagSet, envPrefix string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage of %s:\n", fs.Name())
		fmt.Fprintf(w, "Every flag can also be set by its environment variable or, without the dashes, in the file named by --%s; flags win over the environment, which wins over the file.\n", ConfigFlag)
		PrintUsage(w, fs, envPrefix)
	}
}
