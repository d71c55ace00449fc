package edgebench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// RSS is a process's resident memory by kind, in MiB, from
// /proc/<pid>/status. Anon is the Go heap, stacks and other private
// memory; File is pages of mapped files (Badger maps its tables, value log
// and memtable logs), which the kernel can drop under memory pressure but
// which count in RSS while resident.
type RSS struct {
	Anon, File float64
}

// CurrentRSS returns the resident memory of process pid now.
func CurrentRSS(pid int) (RSS, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return RSS{}, fmt.Errorf("rss: %w", err)
	}
	return parseRSS(b)
}

func parseRSS(b []byte) (RSS, error) {
	var r RSS
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *float64
		switch string(k) {
		case "RssAnon":
			dst = &r.Anon
		case "RssFile":
			dst = &r.File
		default:
			continue
		}
		kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
		if err != nil {
			return RSS{}, fmt.Errorf("rss: %s %q: %w", k, v, err)
		}
		*dst = float64(kb) / 1024
		found++
	}
	if found != 2 {
		return RSS{}, fmt.Errorf("rss: RssAnon or RssFile missing in /proc/<pid>/status")
	}
	return r, nil
}

// MaxRSS keeps the largest of each kind seen.
func (r *RSS) MaxRSS(o RSS) {
	r.Anon = max(r.Anon, o.Anon)
	r.File = max(r.File, o.File)
}
