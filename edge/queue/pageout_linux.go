package queue

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// pageOutSupported reports whether pageOut can work on this system.
const pageOutSupported = true

// pageOut asks the kernel to reclaim the resident pages of the Badger
// table and value-log files under dir that this process has mapped
// (madvise MADV_PAGEOUT, Linux 5.4 and later). Badger reads and writes its
// tables through shared file mappings, and every page it touched stays in
// the process's resident set until the table is deleted, although the
// queue reads each event once. MADV_PAGEOUT never changes memory contents:
// a page touched again is read back from the page cache or the disk. So a
// table that Badger unmaps between the read of /proc/self/maps and the
// madvise call is harmless too: the advice fails on an unmapped range, and
// on a range mapped anew it only costs that mapping a page fault later. It
// returns the bytes of the mappings it advised, or ErrPageOutUnsupported
// when the kernel does not know MADV_PAGEOUT.
func pageOut(dir string) (int64, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("page out: %w", err)
	}
	defer f.Close()
	prefix := []byte(filepath.Clean(dir) + string(filepath.Separator))
	var advised int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		start, end, path, ok := parseMapsLine(sc.Bytes())
		if !ok || !bytes.HasPrefix(path, prefix) {
			continue
		}
		if ext := filepath.Ext(string(path)); ext != ".sst" && ext != ".vlog" && ext != ".mem" {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_PAGEOUT)
		switch {
		case errno == 0:
			advised += int64(end - start)
		case errno == unix.EINVAL && advised == 0:
			// Before Linux 5.4, or a kernel without the advice.
			return 0, ErrPageOutUnsupported
		}
		// ENOMEM: the table was unmapped meanwhile; nothing to do.
	}
	if err := sc.Err(); err != nil {
		return advised, fmt.Errorf("page out: read /proc/self/maps: %w", err)
	}
	return advised, nil
}

// parseMapsLine splits a /proc/<pid>/maps line:
// "start-end perms offset dev inode path". ok is false for lines without a
// path or with malformed addresses.
func parseMapsLine(line []byte) (start, end uintptr, path []byte, ok bool) {
	fields := bytes.Fields(line)
	if len(fields) < 6 {
		return 0, 0, nil, false
	}
	lo, hi, found := bytes.Cut(fields[0], []byte("-"))
	if !found {
		return 0, 0, nil, false
	}
	s, err1 := strconv.ParseUint(string(lo), 16, 64)
	e, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, nil, false
	}
	// The path is everything after the inode field; it may hold spaces.
	i := bytes.Index(line, fields[5])
	return uintptr(s), uintptr(e), line[i:], true
}
