//go:build unix

package relay

import (
	"os"
	"syscall"
)

// keepOwner gives path the owner and group of like, when run as root: a
// file that an operator's root shell writes into a relay's data directory
// stays readable by the relay's own user.
func keepOwner(path, like string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(like)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return os.Chown(path, int(st.Uid), int(st.Gid))
}
