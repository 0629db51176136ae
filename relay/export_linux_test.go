package relay

import (
	"syscall"
	"testing"
)

// MountSmallFS mounts a tmpfs of size (mount's size= option) on a
// temporary directory and unmounts it when the test ends, after what the
// test opens on it later (cleanups run last first). It skips the test
// where mounting is not permitted (not root, or no CAP_SYS_ADMIN in a
// container).
func MountSmallFS(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a small tmpfs for a full-disk test (%v): it needs root or CAP_SYS_ADMIN; TestStorageFull and TestDiskReserve cover the caps without a real full disk", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}
