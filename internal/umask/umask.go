// Package umask reads the process's file mode creation mask without
// changing it. It owns only that; it must not create or change files, and
// imports nothing of mtlsctl.
package umask

import (
	"os"
	"strconv"
	"strings"
)

// Process returns the process's file mode creation mask, or -1 when it
// cannot be read without changing it (umask(2) only reads it by setting it,
// which would race with files created meanwhile by other goroutines).
func Process() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil || m > 0o777 {
				return -1
			}
			return int(m)
		}
	}
	return -1
}
