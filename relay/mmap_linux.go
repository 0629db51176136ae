//go:build linux

package relay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// canDropMapping reports whether fileResident and dropMapping work on this
// system.
const canDropMapping = true

// fileResident returns the process's file-backed resident memory in bytes
// (RssFile plus RssShmem): the third field of /proc/self/statm, in pages.
// It costs one small read of /proc (about 7µs) and does not depend on the
// size of the mappings, unlike mincore, which moreover reports whether a
// page is in the page cache, not whether this process maps it.
func fileResident() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 3 {
		return 0, fmt.Errorf("/proc/self/statm: %d fields", len(f))
	}
	pages, err := strconv.ParseInt(string(f[2]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/self/statm: %w", err)
	}
	return pages * int64(os.Getpagesize()), nil
}

// dropMapping removes the resident pages of bytes [off, off+size) of the
// file mapping that starts at addr from the process's page tables with
// madvise(MADV_DONTNEED). For a shared file mapping this discards nothing:
// the pages stay in the page cache, and a later access maps them again
// (a minor fault). The range is clamped to end, the mapping's end as
// mappingEnd read it, so that no other mapping, such as the Go heap, is
// ever touched: an end read earlier for the same addr is never beyond the
// current one, because bbolt's mapping only grows while the file is open
// (it never truncates the file). off must be a multiple of the page size.
//
// The caller must keep the mapping in place for the duration of the call:
// for bbolt, by calling it inside a read transaction.
func dropMapping(addr, end uintptr, off, size int64) error {
	if off < 0 || off%int64(os.Getpagesize()) != 0 {
		panic("relay: dropMapping offset not page-aligned")
	}
	if size <= 0 || end <= addr {
		return nil
	}
	n := uint64(end - addr)
	if uint64(off) >= n {
		return nil
	}
	if uint64(size) > n-uint64(off) {
		size = int64(n - uint64(off))
	}
	// A raw system call: unix.Madvise takes a []byte, which would have to be
	// made from addr, a uintptr, by a conversion go vet rightly flags.
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, addr+uintptr(off), uintptr(size), unix.MADV_DONTNEED)
	if errno != 0 {
		return fmt.Errorf("madvise: %w", errno)
	}
	return nil
}

// errNoMapping is returned by mappingEnd when no mapping starts at the
// address.
var errNoMapping = errors.New("no mapping at the address")

// mappingEnd returns the end of the mapping that starts at addr, from
// /proc/self/maps.
func mappingEnd(addr uintptr) (uintptr, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	// Each line starts with "start-end " in hexadecimal.
	for line := range bytes.Lines(maps) {
		rng, _, _ := bytes.Cut(line, []byte(" "))
		start, end, ok := bytes.Cut(rng, []byte("-"))
		if !ok {
			continue
		}
		s, err := strconv.ParseUint(string(start), 16, 64)
		if err != nil || uintptr(s) != addr {
			continue
		}
		e, err := strconv.ParseUint(string(end), 16, 64)
		if err != nil || e < s {
			return 0, fmt.Errorf("/proc/self/maps: malformed line %q", line)
		}
		return uintptr(e), nil
	}
	return 0, fmt.Errorf("/proc/self/maps: %w %#x", errNoMapping, addr)
}
