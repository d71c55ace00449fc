package simulate

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// ReadCredentials reads a device credentials file in the edge agent's
// --device-credentials format: one "device-id password" per line, blank
// lines and lines starting with # ignored. Device ids are lower-cased.
func ReadCredentials(r io.Reader, name string) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 2 {
			return nil, fmt.Errorf("device credentials %s line %d: want \"device-id password\": %w", name, line, ErrInvalidConfig)
		}
		out[strings.ToLower(f[0])] = f[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("device credentials %s: %w", name, err)
	}
	return out, nil
}

// WriteCredentials writes, in the --device-credentials format, a fresh
// random password for every presence sensor of stores stores (NumZones
// per store, ids from SensorID).
func WriteCredentials(w io.Writer, stores int) error {
	if stores <= 0 || stores > 9999 {
		return fmt.Errorf("stores %d: must be 1 to 9999: %w", stores, ErrInvalidConfig)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# presence sensors of %d simulated stores, %d per store (zones %s)\n", stores, NumZones, ZoneMap())
	var pw [12]byte
	for s := range stores {
		for z := range NumZones {
			if _, err := rand.Read(pw[:]); err != nil {
				return fmt.Errorf("device credentials: %w", err)
			}
			fmt.Fprintf(bw, "%s %s\n", SensorID(s, uint8(z+1)), hex.EncodeToString(pw[:]))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("device credentials: %w", err)
	}
	return nil
}
