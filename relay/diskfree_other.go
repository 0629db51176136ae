//go:build !unix

package relay

import "errors"

// diskFree is not available here: the free-disk reserve has no effect.
func diskFree(string) (int64, error) {
	return 0, errors.ErrUnsupported
}
