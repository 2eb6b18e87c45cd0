package umask

import (
	"runtime"
	"syscall"
	"testing"
)

func TestProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/status")
	}
	// Setting the mask is safe here: no other test in this package creates files.
	old := syscall.Umask(0o027)
	t.Cleanup(func() { syscall.Umask(old) })
	if got := Process(); got != 0o027 {
		t.Fatalf("Process() = %#o, want 0o027", got)
	}
}
