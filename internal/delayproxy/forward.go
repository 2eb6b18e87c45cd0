// Package delayproxy only forwards to internal/testinfra/delayproxy, where
// the test-only delay proxy now lives. It stays until distribute's
// benchmarks (under refactoring on another branch) import the new path;
// then delete it. Code that ships must not import it.
//
// Deprecated: import github.com/mtlsctl/mtlsctl/internal/testinfra/delayproxy.
package delayproxy

import (
	"time"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/delayproxy"
)

// Proxy is [delayproxy.Proxy].
type Proxy = delayproxy.Proxy

// Start is [delayproxy.Start].
func Start(target string, rtt time.Duration) (*Proxy, error) {
	return delayproxy.Start(target, rtt)
}
