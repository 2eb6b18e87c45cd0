// Package e2e holds the end-to-end tests: the mtlsctl binary driven as a
// subprocess, as a user would, against real OpenSSH hosts (internal/testinfra/testnet)
// and real Consul agents. Every test skips cleanly when the machine cannot
// host them (not root, no sshd, no network namespaces).
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// TestMain skips the whole package under -short (`make test-short` runs unit
// tests only) and removes the mtlsctl binary that mtlsctlBinary built, if any.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short (real sshd hosts and Consul agents)")
		os.Exit(0)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// mtlsctlBinary builds cmd/mtlsctl once per test binary (only when a test
// gets past its skips) and returns its path.
func mtlsctlBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "mtlsctl-e2e-bin-")
		if binErr != nil {
			return
		}
		_, here, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(here))
		binPath = filepath.Join(binDir, "mtlsctl")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/mtlsctl")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/mtlsctl: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
