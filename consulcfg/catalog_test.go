package consulcfg

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/inventory"
)

func mustCatalog(t *testing.T, name string) *Catalog {
	t.Helper()
	c, err := LoadCatalog(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadCatalog(t *testing.T) {
	groups := map[string][]string{
		CatalogEdge:   {"mesh", "local", "outside", "consul"},
		CatalogHybrid: {"internal", "inbound", "outbound", "two-way"},
	}
	for _, name := range CatalogNames {
		c := mustCatalog(t, name)
		if c.Name != name || c.Title == "" || len(c.Notes) == 0 {
			t.Errorf("%s: name %q, title %q, %d notes", name, c.Name, c.Title, len(c.Notes))
		}
		for _, r := range c.Connections {
			if !slices.Contains(groups[name], r.Group) {
				t.Errorf("%s: row %+v: group %q, want one of %v", name, r, r.Group, groups[name])
			}
		}
	}
	if _, err := LoadCatalog("cloud"); !errors.Is(err, ErrUnknownCatalog) || !strings.Contains(err.Error(), "edge or hybrid") {
		t.Errorf("LoadCatalog(cloud) = %v, want ErrUnknownCatalog naming the catalogues", err)
	}
}

func TestParseCatalogErrors(t *testing.T) {
	const head = "group\tsource\tdestination\tprotocol\tsecurity\tpurpose\n"
	for _, tc := range []struct{ name, text, want string }{
		{"empty", "# nothing\n", "no rows"},
		{"no header", "mesh\ta\tb\ttcp/1\tmTLS\tx\n", "line 1: want the header"},
		{"short row", head + "mesh\ta\tb\ttcp/1\tmTLS\n", "line 2: 5 fields, want 6"},
		{"long row", head + "mesh\ta\tb\ttcp/1\tmTLS\tx\ty\n", "line 2: 7 fields"},
		{"empty field", head + "mesh\ta\t\ttcp/1\tmTLS\tx\n", "line 2: destination is empty"},
		{"padded field", head + "mesh\ta \tb\ttcp/1\tmTLS\tx\n", "line 2: source is empty or has surrounding spaces"},
		{"empty note", head + "note\t\n", "line 2: 2 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCatalog(tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseCatalog = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// seedWords normalises seed or catalogue text for comparison: lower case,
// words stripped of surrounding punctuation, and the seed's one typo read as
// the catalogue spells it.
func seedWords(s string) []string {
	var out []string
	for _, w := range strings.Fields(strings.ToLower(s)) {
		w = strings.Trim(w, ".,;:()")
		if w == "managemennt" {
			w = "management"
		}
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

// seedLine is one line of a table of the hybrid seed, with the group the
// table puts it in.
type seedLine struct {
	group, text string
}

// hybridSeedLines returns the lines of the two tables of
// testdata/hybrid-secure-ports.txt (a copy of the project's seed), without
// captions and headers. A table cell that spans lines (TCP/9042 then
// TCP/9142) gives several lines.
func hybridSeedLines(t *testing.T) []seedLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "hybrid-secure-ports.txt"))
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{
		"Internal Connections":                     "internal",
		"Inbound Connections (exposed externally)": "inbound",
		"Outbound Connections":                     "outbound",
		"Two-way Connections":                      "two-way",
	}
	var out []seedLine
	group, in := "", false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "Internal Connections" || line == "External Connections":
			in, group = true, labels[line]
		case !in:
		case line == "" && group == "internal", strings.HasPrefix(line, "* indicates"):
			in = false
		case line == "", strings.HasPrefix(line, "Source Destination"):
		case labels[line] != "":
			group = labels[line]
		default:
			if group == "" {
				t.Fatalf("seed line %q comes before its group", line)
			}
			out = append(out, seedLine{group, line})
		}
	}
	return out
}

// TestHybridCatalogCoversSeed checks that every row of the seed's two tables
// is in hybrid.tsv. The seed's rows run over several lines and leave
// repeated cells empty, so each seed line is matched, in order, to the first
// catalogue row at or after the previous match whose group is the line's
// and whose words include all the line's words. A row missing from the
// catalogue leaves its lines unmatched; every catalogue row must also be
// matched by some line, so the catalogue adds no row of its own.
func TestHybridCatalogCoversSeed(t *testing.T) {
	lines := hybridSeedLines(t)
	if len(lines) < 30 {
		t.Fatalf("found %d table lines in the seed, the parser is lost", len(lines))
	}
	rows := mustCatalog(t, CatalogHybrid).Connections
	rowWords := make([]map[string]bool, len(rows))
	for i, r := range rows {
		rowWords[i] = map[string]bool{}
		for _, w := range seedWords(strings.Join([]string{r.Source, r.Destination, r.Protocol, r.Security, r.Purpose}, " ")) {
			rowWords[i][w] = true
		}
	}
	hit := make([]bool, len(rows))
	j := 0
	for _, l := range lines {
		k := j
		for ; k < len(rows); k++ {
			if rows[k].Group != l.group {
				continue
			}
			if !slices.ContainsFunc(seedWords(l.text), func(w string) bool { return !rowWords[k][w] }) {
				break
			}
		}
		if k == len(rows) {
			t.Errorf("seed line %q (%s) is not in hybrid.tsv at or after row %d (%+v)", l.text, l.group, j+2, rows[min(j, len(rows)-1)])
			continue
		}
		hit[k], j = true, k
	}
	for i, ok := range hit {
		if !ok {
			t.Errorf("hybrid.tsv row %+v matches no line of the seed", rows[i])
		}
	}
}

// TestEdgeCatalogMatchesIntentions holds the edge catalogue's mesh rows
// equal to the intentions table: every (source, destination) pair of
// apigeeTable is a row and every mesh row is such a pair, with the ports
// the mesh carries for the destination, in order.
func TestEdgeCatalogMatchesIntentions(t *testing.T) {
	want := map[string]string{}
	for _, r := range apigeeTable {
		var ports []string
		for _, l := range meshListeners[r.to] {
			ports = append(ports, "tcp/"+strconv.Itoa(l.Target))
		}
		want[string(r.from)+" -> "+string(r.to)] = strings.Join(ports, ", ")
	}
	got := map[string]string{}
	for _, r := range mustCatalog(t, CatalogEdge).Connections {
		if r.Group != "mesh" {
			if r.Security == "mTLS" {
				t.Errorf("row %+v: mTLS outside the mesh group", r)
			}
			continue
		}
		for _, c := range []string{r.Source, r.Destination} {
			if !slices.Contains(inventory.Components, inventory.Component(c)) {
				t.Errorf("mesh row %+v: %q is not a component name", r, c)
			}
		}
		if r.Security != "mTLS" {
			t.Errorf("mesh row %+v: security %q, want mTLS", r, r.Security)
		}
		k := r.Source + " -> " + r.Destination
		if _, dup := got[k]; dup {
			t.Errorf("mesh row %s twice", k)
		}
		got[k] = r.Protocol
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("apigeeTable allows %s, edge.tsv has no mesh row for it", k)
		} else if g != w {
			t.Errorf("edge.tsv %s: ports %q, the mesh carries %q", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("edge.tsv has a mesh row %s that apigeeTable does not allow", k)
		}
	}
}

// TestEdgePaths checks the cluster's paths against the intentions: each
// path is an allowed intention from the source node's egress service to the
// destination node's ingress service, and each allow is some path.
func TestEdgePaths(t *testing.T) {
	in := fiveNodeMesh(t)
	top, a := in.Topology, in.Ports
	top.Cluster.Mesh.Allow = []inventory.AllowRule{{From: qpid, To: ldap, Line: 42}}
	paths := EdgePaths(top, a)
	ints, err := Intentions(top, a)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[[2]string]bool{}
	for _, i := range ints {
		if i.Action == IntentionAllow {
			allowed[[2]string{i.Source, i.Destination}] = false
		}
	}
	dashed := func(node string) string { return dashedAddress(mustIPv4(t, top.Node(node).Address)) }
	for _, p := range paths {
		if p.SourceNode == p.DestinationNode {
			t.Errorf("path %+v stays on one node", p)
		}
		k := [2]string{egressServiceName(dashed(p.SourceNode)),
			ingressServiceName(inventory.Component(p.Destination), p.Port, dashed(p.DestinationNode))}
		if _, ok := allowed[k]; !ok {
			t.Errorf("path %+v: no allow intention %s -> %s", p, k[0], k[1])
		}
		allowed[k] = true
		if p.ProxyPort == 0 || p.EgressPort == 0 || p.Security != "mTLS" || p.Protocol != "tcp" {
			t.Errorf("path %+v: missing ports or security", p)
		}
	}
	for k, seen := range allowed {
		if !seen {
			t.Errorf("allow intention %s -> %s has no path", k[0], k[1])
		}
	}

	// The example: router on n2 to ZooKeeper's client port on n1,
	// carried by n2's egress port and n1's first ZooKeeper proxy port.
	i := slices.IndexFunc(paths, func(p MeshPath) bool {
		return p.Source == "router" && p.SourceNode == "n2" && p.DestinationNode == "n1" && p.Port == 2181
	})
	if i < 0 {
		t.Fatal("no path router (n2) -> zookeeper (n1) tcp/2181")
	}
	if p := paths[i]; p.ProxyPort != a.Ports("n1", "zookeeper")[0] || p.EgressPort != a.Ports("n2", inventory.Egress)[0] ||
		p.Rule != "router -> zookeeper (Apigee table)" {
		t.Errorf("router (n2) -> zookeeper (n1) = %+v", p)
	}
	if !slices.ContainsFunc(paths, func(p MeshPath) bool { return p.Rule == "qpid -> openldap (mesh.allow, line 42)" }) {
		t.Error("the mesh.allow rule gives no path")
	}

	top.Cluster.Mesh.Enabled = false
	if got := EdgePaths(top, a); got != nil {
		t.Errorf("mesh disabled: %d paths, want none", len(got))
	}
}

func mustIPv4(t *testing.T, s string) netip.Addr {
	t.Helper()
	ip, ok := ipv4(s)
	if !ok {
		t.Fatalf("%q is not IPv4", s)
	}
	return ip
}

func TestCatalogOutput(t *testing.T) {
	in := fiveNodeMesh(t)
	c := mustCatalog(t, CatalogEdge)
	c.Cluster, c.Paths = in.Topology.Cluster.Name, EdgePaths(in.Topology, in.Ports)
	var buf bytes.Buffer
	if err := c.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, w := range []string{
		"\nGROUP ",
		"mesh     router",
		"note: The component ports",
		"mesh paths in cluster edge-test",
		"router (n2)",
		"n2 egress 10701 -> n1 proxy 10001",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}

	buf.Reset()
	h := mustCatalog(t, CatalogHybrid)
	h.PathsNote = "none here"
	if err := h.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Catalog
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Name != CatalogHybrid || len(back.Connections) != len(h.Connections) || back.PathsNote != "none here" || back.Paths != nil {
		t.Errorf("JSON round trip: %+v", back)
	}
	if !strings.Contains(buf.String(), `"TCP/*, UDP/*"`) {
		t.Errorf("JSON escapes or loses the protocol: %s", buf.String())
	}
}
