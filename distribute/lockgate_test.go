package distribute

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Two admins applying the same bundles at once: both take the first node's
// lock before any other, so exactly one applies and the other stops at that
// node, whatever the concurrency (with 1, a node waiting for the first
// node's lock must not take the only slot).
func TestTwoAppliesOneWins(t *testing.T) {
	tests := []struct {
		name        string
		concurrency int
	}{
		{"default concurrency", 0},
		{"one node at a time", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nodeSpec{name: "n1", server: true}, nodeSpec{name: "n2"}, nodeSpec{name: "n3"})
			// A slow validation keeps both applies in staging together.
			slow := "#!/bin/sh\nsleep 0.3\n"
			for _, srv := range f.servers {
				if err := os.WriteFile(filepath.Join(sandboxDir(srv), "bin", "consul"), []byte(slow), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			b := f.bundles("")
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i := range errs {
				o := f.opts()
				o.Concurrency = tc.concurrency
				o.JournalDir = filepath.Join(t.TempDir(), "journal")
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = f.apply(t, b, o)
				}()
			}
			wg.Wait()
			won := 0
			for _, err := range errs {
				if err == nil {
					won++
					continue
				}
				var ne *NodeError
				if !errors.Is(err, ErrLocked) || !errors.As(err, &ne) || ne.Node != "n1" {
					t.Errorf("loser's error %v: want ErrLocked on n1, the first node", err)
				}
			}
			if won != 1 {
				t.Fatalf("%d applies succeeded, want 1: %v", won, errs)
			}
			for _, n := range f.topo.Nodes {
				if f.readNode(n.Name, "/var/lib/mtlsctl/generation") == "" {
					t.Errorf("%s: not committed", n.Name)
				}
				if left := f.stagingLeft(n.Name); left != nil {
					t.Errorf("%s: left behind %v", n.Name, left)
				}
			}
		})
	}
}
