package distribute

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/delayproxy"
	"golang.org/x/crypto/ssh/knownhosts"
)

// BenchmarkApplyLatency applies N files to one sandbox node through a proxy
// that adds a 20 ms round trip and reports the apply's wall time in round
// trips (connect, inspect, lock, pipelined upload, verify, commit, reload).
// The count must stay about flat from 8 to 32 files.
func BenchmarkApplyLatency(b *testing.B) {
	for _, files := range []int{8, 32} {
		b.Run(fmt.Sprintf("files=%d/rtt=20ms", files), func(b *testing.B) {
			benchApply(b, files, 20*time.Millisecond)
		})
	}
}

func benchApply(b *testing.B, nfiles int, rtt time.Duration) {
	f := newFixture(b, nodeSpec{name: "n"})
	p, err := delayproxy.Start(f.servers["n"].Addr(), rtt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	f.topo.Nodes[0].SSHPort = p.Addr().(*net.TCPAddr).Port
	os.WriteFile(filepath.Join(f.home, ".ssh", "known_hosts"),
		[]byte(knownhosts.Line([]string{knownhosts.Normalize(p.Addr().String())}, f.servers["n"].HostKey())+"\n"), 0o600)
	o := f.opts()
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		bundle := consulcfg.Bundle{Node: "n", Datacenter: "dc1"}
		for k := 0; k < nfiles; k++ {
			content := fmt.Appendf(nil, "{\"iteration\": %d, \"file\": %d, \"pad\": %q}\n", i, k, make([]byte, 1500))
			bundle.Files = append(bundle.Files, consulcfg.NewFile(fmt.Sprintf("/etc/consul.d/f%02d.json", k), content, 0o644, consulcfg.KindConfig))
		}
		bundle.Seal()
		start := time.Now()
		res, err := Apply(context.Background(), f.topo, []consulcfg.Bundle{bundle}, o)
		total += time.Since(start)
		if err != nil || !res.Changed {
			b.Fatalf("apply: %v (changed=%v)", err, res != nil && res.Changed)
		}
	}
	b.ReportMetric(float64(total)/float64(b.N)/float64(rtt), "rtts/op")
}
