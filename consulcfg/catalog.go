package consulcfg

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// The catalogues are data, kept beside the code that must agree with them
// (a test holds the edge catalogue's mesh rows equal to apigeeTable).
var (
	//go:embed catalog/edge.tsv
	edgeCatalogTSV string
	//go:embed catalog/hybrid.tsv
	hybridCatalogTSV string
)

// Catalogue names (`mtlsctl ports --catalog NAME`).
const (
	CatalogEdge   = "edge"
	CatalogHybrid = "hybrid"
)

// CatalogNames lists the catalogues LoadCatalog knows.
var CatalogNames = []string{CatalogEdge, CatalogHybrid}

var catalogs = map[string]struct{ title, tsv string }{
	CatalogEdge:   {"Apigee Edge for Private Cloud with mTLS: connections between components", edgeCatalogTSV},
	CatalogHybrid: {"Apigee hybrid runtime plane: internal and external connections", hybridCatalogTSV},
}

// ErrUnknownCatalog is returned by LoadCatalog for a name it does not know.
var ErrUnknownCatalog = errors.New("unknown connection catalogue")

// Connection is one row of a connection catalogue.
type Connection struct {
	// Group sorts the rows: for edge "mesh", "local", "outside" or "consul";
	// for hybrid "internal", "inbound", "outbound" or "two-way".
	Group       string `json:"group"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Protocol    string `json:"protocol"` // e.g. "tcp/2181, tcp/2888"
	Security    string `json:"security"`
	Purpose     string `json:"purpose"`
}

// MeshPath is one allowed mesh connection in a cluster: a component on one
// node reaching one listener of a component on another node, and the ports
// that carry it (the source's egress proxy, the destination's ingress proxy).
type MeshPath struct {
	Source          string `json:"source"`
	SourceNode      string `json:"source_node"`
	Destination     string `json:"destination"`
	DestinationNode string `json:"destination_node"`
	Protocol        string `json:"protocol"`
	Port            int    `json:"port"` // the destination component's own port
	// EgressPort and ProxyPort are 0 when the assignment lacks them.
	EgressPort int    `json:"egress_port,omitempty"`
	ProxyPort  int    `json:"proxy_port,omitempty"`
	Security   string `json:"security"`
	Purpose    string `json:"purpose"`
	Rule       string `json:"rule"` // the allow rule behind the path
}

// Catalog is a connection catalogue; for edge, with a cluster's mesh paths.
type Catalog struct {
	Name        string       `json:"catalog"`
	Title       string       `json:"title"`
	Connections []Connection `json:"connections"`
	Notes       []string     `json:"notes,omitempty"`
	Cluster     string       `json:"cluster,omitempty"`
	Paths       []MeshPath   `json:"paths,omitempty"`
	// PathsNote says why Paths is empty (no cluster file, no port
	// assignment yet, mesh disabled).
	PathsNote string `json:"paths_note,omitempty"`
}

// LoadCatalog returns the named catalogue (see CatalogNames), without paths.
func LoadCatalog(name string) (*Catalog, error) {
	c, ok := catalogs[name]
	if !ok {
		return nil, fmt.Errorf("%w %q: use %s", ErrUnknownCatalog, name, strings.Join(CatalogNames, " or "))
	}
	cat, err := parseCatalog(c.tsv)
	if err != nil {
		return nil, fmt.Errorf("catalog/%s.tsv: %w", name, err)
	}
	cat.Name, cat.Title = name, c.title
	return cat, nil
}

var catalogHeader = []string{"group", "source", "destination", "protocol", "security", "purpose"}

// parseCatalog reads a catalogue file: comments (#), one header line, then
// rows of six tab-separated non-empty fields, or "note<TAB>text" lines.
func parseCatalog(text string) (*Catalog, error) {
	cat := &Catalog{}
	header := false
	for i, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		switch {
		case !header:
			if strings.Join(f, ",") != strings.Join(catalogHeader, ",") {
				return nil, fmt.Errorf("line %d: want the header %q", i+1, strings.Join(catalogHeader, "\\t"))
			}
			header = true
			continue
		case f[0] == "note" && len(f) == 2 && f[1] != "":
			cat.Notes = append(cat.Notes, f[1])
			continue
		case len(f) != len(catalogHeader):
			return nil, fmt.Errorf("line %d: %d fields, want %d tab-separated", i+1, len(f), len(catalogHeader))
		}
		for j, v := range f {
			if strings.TrimSpace(v) != v || v == "" {
				return nil, fmt.Errorf("line %d: %s is empty or has surrounding spaces", i+1, catalogHeader[j])
			}
		}
		cat.Connections = append(cat.Connections, Connection{
			Group: f[0], Source: f[1], Destination: f[2], Protocol: f[3], Security: f[4], Purpose: f[5],
		})
	}
	if len(cat.Connections) == 0 {
		return nil, errors.New("no rows")
	}
	return cat, nil
}

// EdgePaths lists the mesh paths of the cluster: for every allow rule
// (Apigee's table, then mesh.allow), every node running its source
// component, every other node running its destination component and every
// listener of that component the mesh carries, with the proxy ports of a
// (the source's egress port, the destination's ingress port). It is nil
// when the mesh is disabled. A pair that two rules allow comes once, under
// the first rule.
func EdgePaths(t *inventory.Topology, a *inventory.Assignment) []MeshPath {
	if t == nil || t.Cluster == nil || !t.Cluster.Mesh.Enabled {
		return nil
	}
	type pair struct{ from, to inventory.Component }
	seen := map[pair]bool{}
	var out []MeshPath
	for _, r := range allowRules(t.Cluster) {
		if seen[pair{r.from, r.to}] {
			continue
		}
		seen[pair{r.from, r.to}] = true
		for _, src := range t.Nodes {
			if !src.Has(r.from) {
				continue
			}
			egress := 0
			if p := a.Ports(src.Name, inventory.Egress); len(p) > 0 {
				egress = p[0]
			}
			for _, dst := range t.Nodes {
				if dst == src || !dst.Has(r.to) {
					continue
				}
				proxies := a.Ports(dst.Name, string(r.to))
				for i, l := range meshedListeners(t.Cluster, r.to) {
					p := MeshPath{
						Source: string(r.from), SourceNode: src.Name,
						Destination: string(r.to), DestinationNode: dst.Name,
						Protocol: "tcp", Port: l.Target, EgressPort: egress,
						Security: "mTLS", Purpose: l.Purpose, Rule: r.why,
					}
					if i < len(proxies) {
						p.ProxyPort = proxies[i]
					}
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// WriteTable writes the catalogue as aligned tables: its rows and notes,
// then the cluster's mesh paths or why there are none.
func (c *Catalog) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\n\n", c.Title)
	fmt.Fprintln(tw, "GROUP\tSOURCE\tDESTINATION\tPROTOCOL/PORT\tSECURITY\tPURPOSE")
	for _, r := range c.Connections {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Group, r.Source, r.Destination, r.Protocol, r.Security, r.Purpose)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range c.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if c.PathsNote != "" {
		fmt.Fprintf(w, "\nmesh paths: %s\n", c.PathsNote)
	}
	if len(c.Paths) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nmesh paths in cluster %s (source egress proxy -> destination ingress proxy):\n\n", c.Cluster)
	port := func(p int) string {
		if p == 0 {
			return "(unassigned)"
		}
		return strconv.Itoa(p)
	}
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tPROTOCOL/PORT\tVIA\tSECURITY\tPURPOSE")
	for _, p := range c.Paths {
		fmt.Fprintf(tw, "%s (%s)\t%s (%s)\t%s/%d\t%s egress %s -> %s proxy %s\t%s\t%s\n",
			p.Source, p.SourceNode, p.Destination, p.DestinationNode, p.Protocol, p.Port,
			p.SourceNode, port(p.EgressPort), p.DestinationNode, port(p.ProxyPort), p.Security, p.Purpose)
	}
	return tw.Flush()
}

// WriteJSON writes the catalogue as one JSON object.
func (c *Catalog) WriteJSON(w io.Writer) error {
	b, err := marshalJSON(c)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
