package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/unico-cdp/unico/hub/importer"
	"github.com/unico-cdp/unico/internal/conf"
	"github.com/unico-cdp/unico/protocol"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// countingReader counts bytes read, for the progress bar.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func runImport(args []string) int {
	fs := flag.NewFlagSet("hub import", flag.ContinueOnError)
	var (
		mapping, format, hubURL, cc, tenant string
		token                               conf.Secret
		batch                               int
	)
	fs.StringVar(&mapping, "map", "", "`column=target,…`: target is an identifier type (email, phone, loyalty_id, user_id, …) or trait:NAME (required)")
	fs.StringVar(&format, "format", "", "csv or jsonl (default: from the file extension)")
	fs.StringVar(&hubURL, "hub-url", "http://127.0.0.1:8090", "base URL of the running hub")
	fs.Var(&token, "admin-token", "the hub's admin token")
	fs.StringVar(&cc, "default-country-code", "", "calling code for national phone numbers, such as 44")
	fs.StringVar(&tenant, "tenant", "default", "tenant of the imported records")
	fs.IntVar(&batch, "batch", 1000, "events per request (1 to 10000)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: hub import [flags] FILE\nLoads customer records from a CSV (with a header row) or JSON Lines file into a running hub.")
		conf.PrintUsage(fs.Output(), fs, "UNICO")
	}
	if err := conf.Load(fs, args, "UNICO"); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "hub import:", err)
		return 2
	}
	if fs.NArg() != 1 || mapping == "" || batch < 1 || batch > protocol.MaxBatchEvents {
		fs.Usage()
		return 2
	}
	name := fs.Arg(0)
	m, err := importer.ParseMapping(mapping)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hub import:", err)
		return 2
	}
	if format == "" {
		switch strings.ToLower(filepath.Ext(name)) {
		case ".csv":
			format = "csv"
		case ".jsonl", ".ndjson", ".json":
			format = "jsonl"
		}
	}
	f, err := os.Open(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hub import:", err)
		return 1
	}
	defer f.Close()
	st, _ := f.Stat()
	cr := &countingReader{r: f}
	rd, err := importer.NewReader(cr, importer.Options{Mapping: m, Format: format, Source: filepath.Base(name), DefaultCountryCode: cc, Tenant: tenant})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hub import:", err)
		return 2
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	var sum struct {
		Records, Accepted, Duplicates, Skipped, Errors int
	}
	start := time.Now()
	lastDraw := time.Time{}
	progress := func(final bool) {
		if !final && time.Since(lastDraw) < 200*time.Millisecond {
			return
		}
		lastDraw = time.Now()
		pct := 100.0
		if st != nil && st.Size() > 0 {
			pct = 100 * float64(cr.n) / float64(st.Size())
		}
		bar := strings.Repeat("#", int(pct/5)) + strings.Repeat(".", 20-int(pct/5))
		fmt.Fprintf(os.Stderr, "\r[%s] %5.1f%%  %d records  %d accepted  %d skipped", bar, pct, sum.Records, sum.Accepted, sum.Skipped)
		if final {
			fmt.Fprintln(os.Stderr)
		}
	}
	send := func(evs []*protocol.Event) error {
		body, err := json.Marshal(evs)
		if err != nil {
			return err
		}
		req, err := http.NewRequest(http.MethodPost, strings.TrimRight(hubURL, "/")+"/api/v1/events", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token.Reveal())
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("hub answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		var res struct{ Accepted, Duplicates int }
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("hub answer: %w", err)
		}
		sum.Accepted += res.Accepted
		sum.Duplicates += res.Duplicates
		return nil
	}
	var pending []*protocol.Event
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		sum.Records++
		if err != nil {
			if errors.Is(err, importer.ErrSkip) {
				sum.Skipped++
			} else {
				sum.Errors++
				fmt.Fprintln(os.Stderr, "\nhub import:", err)
				if sum.Errors > 100 {
					fmt.Fprintln(os.Stderr, "hub import: too many bad records, stopping")
					return 1
				}
			}
			continue
		}
		pending = append(pending, e)
		if len(pending) == batch {
			if err := send(pending); err != nil {
				fmt.Fprintln(os.Stderr, "\nhub import:", err)
				return 1
			}
			pending = pending[:0]
		}
		progress(false)
	}
	if len(pending) > 0 {
		if err := send(pending); err != nil {
			fmt.Fprintln(os.Stderr, "\nhub import:", err)
			return 1
		}
	}
	progress(true)
	out, _ := json.Marshal(map[string]any{
		"file": name, "records": sum.Records, "accepted": sum.Accepted, "duplicates": sum.Duplicates,
		"skipped_no_identifier": sum.Skipped, "bad_records": sum.Errors, "seconds": time.Since(start).Seconds(),
	})
	fmt.Println(string(out))
	if sum.Errors > 0 {
		return 1
	}
	return 0
}
