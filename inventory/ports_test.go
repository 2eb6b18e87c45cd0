package inventory

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// checkAssignment asserts the invariants of an assignment for top: every node
// has the right number of ports per component (and one egress port), inside
// the component's range; a shared range gives every member all its ports,
// any other range's ports are used once in the cluster; no node has a port
// twice, nor a Consul port.
func checkAssignment(t testing.TB, top *Topology, a *Assignment) {
	t.Helper()
	owner := map[int]string{}
	for _, n := range top.Nodes {
		mine := map[int]string{}
		for _, p := range ConsulPorts {
			mine[p] = "Consul"
		}
		for _, key := range PortKeys() {
			ports := a.Ports(n.Name, key)
			want := 0
			if key == Egress || n.Has(Component(key)) {
				want = PortsPerNode(key)
			}
			if len(ports) != want {
				t.Fatalf("%s %s: %d ports %v, want %d", n.Name, key, len(ports), ports, want)
			}
			r := top.Cluster.Ports[key]
			for i, p := range ports {
				if !r.Contains(p) {
					t.Fatalf("%s %s: port %d outside %s", n.Name, key, p, r)
				}
				if o, dup := mine[p]; dup {
					t.Fatalf("%s: port %d given to %s and %s", n.Name, p, o, key)
				}
				mine[p] = key
				if shared(key, r) {
					if p != r.Min+i {
						t.Fatalf("%s %s: shared range %s gives %v", n.Name, key, r, ports)
					}
					continue
				}
				if o, dup := owner[p]; dup {
					t.Fatalf("port %d given to %s and %s/%s", p, o, n.Name, key)
				}
				owner[p] = n.Name + "/" + key
			}
		}
	}
	if len(a.Nodes) != len(top.Nodes) {
		t.Fatalf("assignment has %d nodes, topology %d", len(a.Nodes), len(top.Nodes))
	}
}

func TestAssignPortsApigeeExample(t *testing.T) {
	doc := strings.Replace(baseYAML, "[zookeeper, cassandra]\n      - name: n3", "[zookeeper, cassandra, postgres]\n      - name: n3", 1)
	top := mustParse(t, doc)
	a, err := AssignPorts(top, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkAssignment(t, top, a)
	want := map[string][]int{
		"n2/postgres":  {10300, 10301, 10302},
		"n3/postgres":  {10303, 10304, 10305},
		"n1/zookeeper": {10001, 10002, 10003},
		"n3/zookeeper": {10007, 10008, 10009},
		"n2/cassandra": {10102, 10103},
		"n1/egress":    {10700},
		"n3/egress":    {10702},
	}
	for k, w := range want {
		node, comp, _ := strings.Cut(k, "/")
		if got := a.Ports(node, comp); !slices.Equal(got, w) {
			t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
	if got := a.All("n1"); !slices.Equal(got, []int{10001, 10002, 10003, 10100, 10101, 10700}) {
		t.Errorf("All(n1) = %v", got)
	}
	again, _ := AssignPorts(top, nil)
	if !a.Equal(again) {
		t.Error("assignment is not deterministic")
	}
}

func TestAssignPortsStable(t *testing.T) {
	top := mustParse(t, baseYAML)
	first, err := AssignPorts(top, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Equal(must(AssignPorts(top, first))) {
		t.Error("re-assigning with prev changed ports")
	}

	t.Run("adding a node keeps existing ports", func(t *testing.T) {
		// A new postgres node placed first in the file must not take n3's ports.
		doc := strings.Replace(baseYAML, "    nodes:\n", "    nodes:\n      - {name: n0, address: 198.18.0.10, components: [postgres, cassandra]}\n", 1)
		grown := mustParse(t, doc)
		a := must(AssignPorts(grown, first))
		checkAssignment(t, grown, a)
		for _, n := range top.Nodes {
			for comp, ports := range first.Nodes[n.Name] {
				if !slices.Equal(a.Ports(n.Name, comp), ports) {
					t.Errorf("%s %s moved from %v to %v", n.Name, comp, ports, a.Ports(n.Name, comp))
				}
			}
		}
		if got := a.Ports("n0", "postgres"); !slices.Equal(got, []int{10303, 10304, 10305}) {
			t.Errorf("n0 postgres = %v, want the lowest free 10303-10305", got)
		}
		if got := a.Ports("n0", Egress); !slices.Equal(got, []int{10703}) {
			t.Errorf("n0 egress = %v", got)
		}
	})

	t.Run("removed node frees its ports", func(t *testing.T) {
		doc := strings.Replace(baseYAML, "      - name: n2\n        address: 198.18.0.12\n        components: [zookeeper, cassandra]\n", "", 1)
		doc = strings.Replace(doc, "    nodes:\n", "    nodes:\n      - {name: n4, address: 198.18.0.14, components: [zookeeper]}\n", 1)
		changed := mustParse(t, doc)
		a := must(AssignPorts(changed, first))
		checkAssignment(t, changed, a)
		if _, ok := a.Nodes["n2"]; ok {
			t.Error("removed node n2 still assigned")
		}
		if got := a.Ports("n4", "zookeeper"); !slices.Equal(got, first.Ports("n2", "zookeeper")) {
			t.Errorf("n4 zookeeper = %v, want n2's freed %v", got, first.Ports("n2", "zookeeper"))
		}
	})

	t.Run("changing a range reassigns only what falls outside", func(t *testing.T) {
		doc := strings.Replace(baseYAML, "postgres: 10300-10399", "cassandra: 10102-10199", 1)
		moved := mustParse(t, doc)
		a := must(AssignPorts(moved, first))
		checkAssignment(t, moved, a)
		// n1 had 10100-10101 (now outside); n2 and n3 keep theirs.
		for _, n := range []string{"n2", "n3"} {
			if !slices.Equal(a.Ports(n, "cassandra"), first.Ports(n, "cassandra")) {
				t.Errorf("%s cassandra moved: %v -> %v", n, first.Ports(n, "cassandra"), a.Ports(n, "cassandra"))
			}
		}
		if got := a.Ports("n1", "cassandra"); !slices.Equal(got, []int{10106, 10107}) {
			t.Errorf("n1 cassandra = %v, want 10106-10107", got)
		}
		if !slices.Equal(a.Ports("n1", "zookeeper"), first.Ports("n1", "zookeeper")) {
			t.Error("other components changed")
		}
	})

	t.Run("corrupt prev is repaired", func(t *testing.T) {
		prev := &Assignment{Nodes: map[string]map[string][]int{
			"n1": {"zookeeper": {10005, 10006, 10007}, "cassandra": {10100}},
			"n2": {"zookeeper": {10005, 10006, 10007}},
			"n3": {"zookeeper": {10001, 10001, 10002}, Egress: {99}},
		}}
		a := must(AssignPorts(top, prev))
		checkAssignment(t, top, a)
		if !slices.Equal(a.Ports("n1", "zookeeper"), []int{10005, 10006, 10007}) {
			t.Errorf("n1 lost its valid ports: %v", a.Ports("n1", "zookeeper"))
		}
	})
}

func must(a *Assignment, err error) *Assignment {
	if err != nil {
		panic(err)
	}
	return a
}

func TestAssignPortsExhausted(t *testing.T) {
	top := mustParse(t, baseYAML)
	// Bypass validation (which refuses a range this small) to reach the check.
	top.Cluster.Ports["cassandra"] = PortRange{10100, 10104}
	_, err := AssignPorts(top, nil)
	if !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("err = %v, want ErrPortsExhausted", err)
	}
	for _, want := range []string{"cassandra range 10100-10104", "1 node(s) still need 2 port(s) but only 1 are free", "widen ports.cassandra, e.g. 10100-10199, or give it exactly 2 port(s) (e.g. cassandra: 10100-10101) so that every node uses the same: port range exhausted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := AssignPorts(nil, nil); err == nil {
		t.Error("nil topology accepted")
	}
}

func TestAssignmentEqual(t *testing.T) {
	a := &Assignment{Nodes: map[string]map[string][]int{"n1": {"egress": {10700}}}}
	b := &Assignment{Nodes: map[string]map[string][]int{"n1": {"egress": {10700}}}}
	c := &Assignment{Nodes: map[string]map[string][]int{"n1": {"egress": {10701}}}}
	var null *Assignment
	if !a.Equal(b) || a.Equal(c) || a.Equal(null) || !null.Equal(&Assignment{}) {
		t.Error("Equal is wrong")
	}
}

func TestExamples(t *testing.T) {
	paths, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(paths) < 4 {
		t.Fatalf("examples: %v %v", paths, err)
	}
	wantNodes := map[string]int{"edge-5.yaml": 5, "edge-9.yaml": 9, "edge-12.yaml": 12, "edge-13.yaml": 13}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			top, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			if w, ok := wantNodes[filepath.Base(p)]; ok && len(top.Nodes) != w {
				t.Errorf("%d nodes, want %d", len(top.Nodes), w)
			}
			for _, dc := range top.Cluster.Datacenters {
				if got := len(top.Servers(dc.Name)); got != 3 {
					t.Errorf("%s has %d servers, want 3", dc.Name, got)
				}
			}
			a, err := AssignPorts(top, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkAssignment(t, top, a)
			checkRoundTrip(t, top)
		})
	}
	top, err := Load("../examples/edge-12.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !top.MultiDC() || top.Cluster.Datacenters[1].Name != "dc-2" || len(top.Cluster.Datacenters[1].Nodes) != 6 {
		t.Errorf("edge-12 is not two datacenters of 6: %+v", top.Cluster.Datacenters)
	}
}

// TestAssignPortsProperty checks the invariants on random topologies, with
// random previous assignments (a shrunk, grown or reshuffled cluster).
func TestAssignPortsProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		top := randomTopology(t, rng, iter)
		a, err := AssignPorts(top, nil)
		if err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		checkAssignment(t, top, a)
		// Grow the topology by one random node: existing ports stay.
		next := randomTopology(t, rng, iter)
		b, err := AssignPorts(next, a)
		if err != nil {
			t.Fatalf("iteration %d (with prev): %v", iter, err)
		}
		checkAssignment(t, next, b)
		if !b.Equal(must(AssignPorts(next, a))) {
			t.Fatalf("iteration %d: not deterministic", iter)
		}
		// A second run with its own result as prev changes nothing.
		if !b.Equal(must(AssignPorts(next, b))) {
			t.Fatalf("iteration %d: not stable", iter)
		}
	}
}

func randomTopology(t *testing.T, rng *rand.Rand, iter int) *Topology {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: c%d\nports:\n  postgres: 10300-10329\n  zookeeper: 10001-10050\n", iter)
	// Sometimes shared ranges (one node's share, the same on every node).
	for _, r := range []string{"egress: 10700-10700", "openldap: 10250-10250", "qpid: 10400-10401"} {
		if rng.IntN(3) == 0 {
			fmt.Fprintf(&b, "  %s\n", r)
		}
	}
	b.WriteString("datacenters:\n")
	ndc := 1 + rng.IntN(3)
	id := 0
	for d := range ndc {
		fmt.Fprintf(&b, "  - name: dc-%d\n    nodes:\n", d+1)
		n := 3 + rng.IntN(6)
		for i := range n {
			id++
			var comps []string
			if i < 3 {
				comps = append(comps, "zookeeper")
			}
			for _, c := range Components[1:] {
				if rng.IntN(3) == 0 {
					comps = append(comps, string(c))
				}
			}
			// Names from a small pool, so consecutive topologies share nodes.
			fmt.Fprintf(&b, "      - {name: h%d, address: 198.18.%d.%d, components: [%s]}\n", id+rng.IntN(2)*100, d, id, strings.Join(comps, ", "))
		}
	}
	top, err := Parse("random.yaml", []byte(b.String()))
	if err != nil {
		// Too many postgres or zookeeper nodes for the deliberately small
		// ranges: validation refuses it, which is correct; retry.
		if strings.Contains(err.Error(), "widen it") || strings.Contains(err.Error(), "already used") {
			return randomTopology(t, rng, iter)
		}
		t.Fatalf("random topology: %v\n%s", err, b.String())
	}
	return top
}

// withPorts puts a ports block (lines of "key: range") into an example file.
func withPorts(t *testing.T, path string, ranges ...string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block := "ports:\n"
	for _, r := range ranges {
		block += "  " + r + " # here\n"
	}
	doc := strings.Replace(string(data), "\ndatacenters:", "\n"+block+"datacenters:", 1)
	if doc == string(data) {
		t.Fatalf("%s has no datacenters line", path)
	}
	return doc
}

func TestAssignPortsSharedEgress(t *testing.T) {
	top := mustParse(t, withPorts(t, "../examples/edge-13.yaml", "egress: 10700-10700"))
	if len(top.Nodes) != 13 {
		t.Fatalf("%d nodes", len(top.Nodes))
	}
	a, err := AssignPorts(top, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkAssignment(t, top, a)
	for _, n := range top.Nodes {
		if got := a.Ports(n.Name, Egress); !slices.Equal(got, []int{10700}) {
			t.Errorf("%s egress = %v, want [10700]", n.Name, got)
		}
	}
	// Linear ranges are unchanged: the two LDAP nodes have their own ports.
	if a4, a5 := a.Ports("n4", "openldap"), a.Ports("n5", "openldap"); !slices.Equal(a4, []int{10200}) || !slices.Equal(a5, []int{10201}) {
		t.Errorf("openldap = %v, %v", a4, a5)
	}
	// A linear assignment recorded before is replaced by the shared port.
	b, err := AssignPorts(top, a)
	if err != nil || !a.Equal(b) {
		t.Fatalf("re-assign: %v", err)
	}
	checkRoundTrip(t, top)
}

func TestAssignPortsSharedLDAP(t *testing.T) {
	doc := withPorts(t, "../examples/edge-13.yaml", "openldap: 10200-10200", "egress: 10799-10799")
	top := mustParse(t, doc)
	before, err := AssignPorts(mustParse(t, withPorts(t, "../examples/edge-13.yaml", "postgres: 10300-10399")), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := AssignPorts(top, before)
	if err != nil {
		t.Fatal(err)
	}
	checkAssignment(t, top, a)
	var ldap []string
	for _, n := range top.Nodes {
		if n.Has(OpenLDAP) {
			ldap = append(ldap, n.Name)
			if got := a.Ports(n.Name, "openldap"); !slices.Equal(got, []int{10200}) {
				t.Errorf("%s openldap = %v, want [10200]", n.Name, got)
			}
		} else if got := a.Ports(n.Name, "openldap"); got != nil {
			t.Errorf("%s has openldap ports %v", n.Name, got)
		}
		if got := a.Ports(n.Name, Egress); !slices.Equal(got, []int{10799}) {
			t.Errorf("%s egress = %v, want [10799]", n.Name, got)
		}
	}
	if len(ldap) != 2 {
		t.Errorf("LDAP nodes = %v, want 2", ldap)
	}
	// Other components keep the ports they had.
	for _, n := range top.Nodes {
		for _, key := range []string{"zookeeper", "cassandra", "postgres", "router"} {
			if !slices.Equal(a.Ports(n.Name, key), before.Ports(n.Name, key)) {
				t.Errorf("%s %s moved: %v -> %v", n.Name, key, before.Ports(n.Name, key), a.Ports(n.Name, key))
			}
		}
	}
}

func TestAssignPortsSharedMultiPort(t *testing.T) {
	top := mustParse(t, strings.Replace(baseYAML, "postgres: 10300-10399", "zookeeper: 10001-10003", 1))
	a := must(AssignPorts(top, nil))
	checkAssignment(t, top, a)
	for _, n := range top.Nodes {
		if got := a.Ports(n.Name, "zookeeper"); !slices.Equal(got, []int{10001, 10002, 10003}) {
			t.Errorf("%s zookeeper = %v", n.Name, got)
		}
	}
}

func TestAssignPortsSharedStable(t *testing.T) {
	doc := strings.Replace(baseYAML, "postgres: 10300-10399", "egress: 10750-10750\n  openldap: 10200-10200", 1)
	top := mustParse(t, doc)
	first := must(AssignPorts(top, nil))
	checkAssignment(t, top, first)
	// A new node placed first in the file.
	grown := mustParse(t, strings.Replace(doc, "    nodes:\n", "    nodes:\n      - {name: n0, address: 198.18.0.10, components: [cassandra, openldap, postgres]}\n", 1))
	a := must(AssignPorts(grown, first))
	checkAssignment(t, grown, a)
	for _, n := range top.Nodes {
		for key, ports := range first.Nodes[n.Name] {
			if !slices.Equal(a.Ports(n.Name, key), ports) {
				t.Errorf("%s %s moved from %v to %v", n.Name, key, ports, a.Ports(n.Name, key))
			}
		}
	}
	for key, want := range map[string][]int{Egress: {10750}, "openldap": {10200}, "cassandra": {10106, 10107}, "postgres": {10303, 10304, 10305}} {
		if got := a.Ports("n0", key); !slices.Equal(got, want) {
			t.Errorf("n0 %s = %v, want %v", key, got, want)
		}
	}
	if !a.Equal(must(AssignPorts(grown, a))) {
		t.Error("not stable")
	}
	if !a.Equal(must(AssignPorts(grown, first))) {
		t.Error("not deterministic")
	}
}

func TestSharedRangeErrors(t *testing.T) {
	tests := []struct {
		name   string
		ranges []string
		field  string
		msg    string
	}{
		{"shared egress inside the router range", []string{"egress: 10600-10600"}, "ports.egress",
			"egress range 10600-10600 overlaps the router range 10600-10699: a node running both would get the same port twice (egress range 10600-10600 is shared: every node uses all of it); give each its own ports, e.g. egress: 10700-10700"},
		{"shared LDAP inside the cassandra range", []string{"openldap: 10150-10150"}, "ports.openldap",
			"openldap range 10150-10150 overlaps the cassandra range 10100-10199: a node running both would get the same port twice (openldap range 10150-10150 is shared: every openldap node uses all of it); give each its own ports, e.g. openldap: 10200-10200"},
		{"two shared ranges on one port", []string{"openldap: 10200-10200", "egress: 10200-10200"}, "ports.egress",
			"(egress range 10200-10200 is shared: every node uses all of it; openldap range 10200-10200 is shared: every openldap node uses all of it); give each its own ports, e.g. egress: 10700-10700"},
		{"shared egress on a Consul port", []string{"egress: 8500-8500"}, "ports.egress", "egress range 8500-8500 includes Consul's port 8500"},
		{"egress between shared and enough", []string{"egress: 10700-10701"}, "ports.egress",
			"egress range 10700-10701 has 2 ports but its nodes need 13 (1 per node): widen it, e.g. egress: 10700-10799, or give it exactly 1 port(s) (e.g. egress: 10700-10700) so that every node uses the same"},
		{"zookeeper smaller than one node's share", []string{"zookeeper: 10001-10002"}, "ports.zookeeper",
			"has 2 ports but its nodes need 9 (3 per node): widen it, e.g. zookeeper: 10001-10099, or give it exactly 3 port(s) (e.g. zookeeper: 10001-10003)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := withPorts(t, "../examples/edge-13.yaml", tt.ranges...)
			// The problem is on the last range's line.
			last := tt.ranges[len(tt.ranges)-1] + " # here"
			expectProblem(t, doc, last, tt.field, tt.msg)
		})
	}
}

func TestAssignPortsRefusesSharedCollision(t *testing.T) {
	top := mustParse(t, withPorts(t, "../examples/edge-13.yaml", "openldap: 10200-10200"))
	// Bypass validation (which refuses it) to reach AssignPorts' own check.
	top.Cluster.Ports[Egress] = PortRange{10200, 10200}
	_, err := AssignPorts(top, nil)
	if err == nil || !strings.Contains(err.Error(), "node n4 would get port 10200 for both openldap and egress: give ports.egress its own range") {
		t.Errorf("err = %v", err)
	}
	top.Cluster.Ports[Egress] = PortRange{8500, 8500}
	if _, err := AssignPorts(top, nil); err == nil || !strings.Contains(err.Error(), "node n1 would get port 8500 for both Consul and egress") {
		t.Errorf("err = %v", err)
	}
}
