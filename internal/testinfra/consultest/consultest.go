// Package consultest finds the real Consul agents that tests run: the builds
// scripts/build-consul.sh caches. It is for tests only and owns nothing else.
package consultest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Binary returns the path of the cached Consul build of version (e.g.
// "1.6.2"), honouring MTLSCTL_CONSUL_<version with underscores> and the
// script's MTLSCTL_CONSUL_CACHE / XDG_CACHE_HOME. It skips the test, saying
// how to build one, when there is none.
func Binary(tb testing.TB, version string) string {
	tb.Helper()
	env := "MTLSCTL_CONSUL_" + strings.ReplaceAll(version, ".", "_")
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("%s=%s: %v", env, p, err)
		}
		return p
	}
	cache := os.Getenv("MTLSCTL_CONSUL_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				tb.Skipf("no home directory to find the Consul %s cache: run scripts/build-consul.sh %s or set %s", version, version, env)
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "mtlsctl")
	}
	p := filepath.Join(cache, "consul-"+version, "consul")
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("Consul %s not found at %s: run scripts/build-consul.sh %s (or set %s)", version, p, version, env)
	}
	return p
}
