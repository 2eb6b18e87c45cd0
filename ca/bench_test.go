package ca

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// cpuTime is the process's user+system CPU time so far: on a shared
// machine, CPU per op is steadier than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// benchDir is where benchmarks keep their state: MTLSCTL_BENCH_DIR (e.g.
// /dev/shm, to leave the disk out of the numbers) or a temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("MTLSCTL_BENCH_DIR"); d != "" {
		d, err := os.MkdirTemp(d, "mtlsctl-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	return b.TempDir()
}

// BenchmarkGenerate1000 is a first generate for 1,000 nodes (3 servers per
// datacenter): CA, gossip key, 1,000 ECDSA P-256 leaves, 3,000 files
// written durably.
func BenchmarkGenerate1000(b *testing.B) {
	topo := topology(10, 100)
	root := benchDir(b)
	start := cpuTime()
	for i := 0; b.Loop(); i++ {
		s, err := Open(filepath.Join(root, "s", string(rune('a'+i%26)), strconv.Itoa(i)), OpenOptions{Create: true})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Generate(topo, GenerateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkGenerate1000Rerun is a re-run with nothing to do: every leaf read
// and checked against the topology and the CA.
func BenchmarkGenerate1000Rerun(b *testing.B) {
	s, topo := generated1000(b)
	start := cpuTime()
	for b.Loop() {
		if _, err := s.Generate(topo, GenerateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// generated1000 is a state with everything generated for 1,000 nodes.
func generated1000(b *testing.B) (*State, *inventory.Topology) {
	b.Helper()
	topo := topology(10, 100)
	s, err := Open(filepath.Join(benchDir(b), "s"), OpenOptions{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Generate(topo, GenerateOptions{}); err != nil {
		b.Fatal(err)
	}
	return s, topo
}

// BenchmarkIssue is one ECDSA P-256 leaf, in memory.
func BenchmarkIssue(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "s"), OpenOptions{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	c, err := s.CreateCA(CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	spec := LeafSpec{Node: "n1", Datacenter: "dc-1", Server: true, Addresses: []string{"10.0.0.1"}}
	for b.Loop() {
		if _, err := c.Issue(spec, IssueOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCredentials1000 loads the credentials of 1,000 nodes, as render,
// plan and apply do: every leaf read, parsed and checked.
func BenchmarkCredentials1000(b *testing.B) {
	s, topo := generated1000(b)
	start := cpuTime()
	for b.Loop() {
		if _, err := s.Credentials(topo); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}
