//go:build !linux

package relay

import "errors"

// canDropMapping reports whether fileResident and dropMapping work on this
// system: only on Linux, so the store leaves its mapping to the kernel here.
const canDropMapping = false

// fileResident is not implemented here.
func fileResident() (int64, error) { return 0, errors.ErrUnsupported }

// mappingEnd is not implemented here.
func mappingEnd(addr uintptr) (uintptr, error) { return 0, errors.ErrUnsupported }

// dropMapping is not implemented here.
func dropMapping(addr, end uintptr, off, size int64) error { return errors.ErrUnsupported }
