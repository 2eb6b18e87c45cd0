package consulcfg

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// syntheticInput is an n-node, two-DC cluster: 5 servers per DC, the rest a
// mix of the other components, ports unique cluster-wide, addresses
// contiguous like those of scripts/gen-cluster.sh.
func syntheticInput(b testing.TB, nodes int) Input {
	mixes := [][]inventory.Component{{rt, mp}, {pg, qpid}, {cass}, {ms, ldap}, {rt, mp}}
	var dcs []testDC
	for d := range 2 {
		dc := testDC{name: fmt.Sprintf("dc-%d", d+1)}
		for i := range nodes / 2 {
			comps := mixes[i%len(mixes)]
			if i < 5 {
				comps = []inventory.Component{zk, cass}
			}
			// Contiguous addresses from 198.18.0.11 on, as scripts/gen-cluster.sh
			// hands them out.
			ip := d*(nodes/2) + i + 11
			dc.nodes = append(dc.nodes, node(fmt.Sprintf("n%d-%d", d+1, i), fmt.Sprintf("198.18.%d.%d", ip/256, ip%256), comps...))
		}
		dcs = append(dcs, dc)
	}
	top := newTopology(b, "1.13.9", dcs...)
	in := newInput(top)
	next := 20000
	in.Ports = &inventory.Assignment{Nodes: map[string]map[string][]int{}}
	for _, n := range top.Nodes {
		m := map[string][]int{}
		for _, c := range n.Components {
			for range inventory.PortsPerNode(string(c)) {
				m[string(c)] = append(m[string(c)], next)
				next++
			}
		}
		m[inventory.Egress] = []int{next}
		next++
		in.Ports.Nodes[n.Name] = m
	}
	return in
}

func BenchmarkRender1000(b *testing.B) {
	in := syntheticInput(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		bundles, err := Render(in)
		if err != nil || len(bundles) != 1000 {
			b.Fatalf("%d bundles, %v", len(bundles), err)
		}
	}
}

// TestLargeCluster renders a 300-node cluster: every proxy port once, and
// every node's firewall admits exactly the members, in a few prefixes.
func TestLargeCluster(t *testing.T) {
	in := syntheticInput(t, 300)
	bundles, err := Render(in)
	if err != nil || len(bundles) != 300 {
		t.Fatalf("%d bundles, %v", len(bundles), err)
	}
	r := PortReport(in.Topology, in.Ports)
	seen := map[int]string{}
	for _, n := range r.Nodes {
		for _, l := range n.Listeners {
			if l.Daemon == "consul" {
				continue
			}
			if other, dup := seen[l.Port]; dup {
				t.Errorf("port %d on %s and %s", l.Port, n.Node, other)
			}
			seen[l.Port] = n.Node
		}
	}
	var members []netip.Addr
	for _, n := range in.Topology.Nodes {
		members = append(members, netip.MustParseAddr(n.Address))
	}
	for _, b := range bundles {
		fw := string(b.File("/var/lib/mtlsctl/firewall.rules").Content)
		checkMembers(t, fw, members)
		// 198.18.0.11-198.18.1.54 is 11 prefixes (0.11/32, 0.12/30, 0.16/28,
		// ..., 1.52/31, 1.54/32), not 300 rules.
		if got := strings.Count(fw, "-A MTLSCTL-MEMBERS -s "); got != 11 {
			t.Fatalf("%s: %d member rules for 300 contiguous addresses", b.Node, got)
		}
	}
}

// BenchmarkWriteTree1000 writes the rendered bundles of 1,000 nodes to a
// fresh directory (under MTLSCTL_BENCH_DIR when set, e.g. /dev/shm).
func BenchmarkWriteTree1000(b *testing.B) {
	bundles, err := Render(syntheticInput(b, 1000))
	if err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	if d := os.Getenv("MTLSCTL_BENCH_DIR"); d != "" {
		if root, err = os.MkdirTemp(d, "mtlsctl-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(root) })
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := WriteTree(filepath.Join(root, strconv.Itoa(i)), bundles); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderMesh200 renders a 200-node cluster with the mesh on: every
// egress proxy has an upstream (and a nat rule) per listener of every other
// node, so the size grows with the square of the cluster.
func BenchmarkRenderMesh200(b *testing.B) {
	in := withMesh(syntheticInput(b, 200))
	b.ReportAllocs()
	for b.Loop() {
		bundles, err := Render(in)
		if err != nil || len(bundles) != 200 {
			b.Fatalf("%d bundles, %v", len(bundles), err)
		}
	}
}
