package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// PortsCatalog prints a connection catalogue ("edge" or "hybrid") as a
// table or JSON. The edge catalogue comes with the cluster's mesh paths and
// the proxy ports that carry them, taken from the recorded port assignment
// as `ports` takes it; without a cluster file, a recorded assignment or the
// mesh, it comes alone and says why. The hybrid catalogue needs no cluster.
func PortsCatalog(c Common, name, format string) error {
	cat, err := consulcfg.LoadCatalog(name)
	if err != nil {
		return err
	}
	if name == consulcfg.CatalogEdge {
		if err := edgePaths(c, cat); err != nil {
			return err
		}
	}
	if strings.ToLower(format) == "json" {
		var buf bytes.Buffer
		if err := cat.WriteJSON(&buf); err != nil {
			return err
		}
		return c.writeJSON("ports-catalog", json.RawMessage(buf.Bytes()))
	}
	return cat.WriteTable(c.stdout())
}

// edgePaths fills cat's mesh paths from the cluster file and the state, or
// its PathsNote with the reason there are none.
func edgePaths(c Common, cat *consulcfg.Catalog) error {
	if !fileExists(c.Inventory) {
		cat.PathsNote = fmt.Sprintf("no cluster file at %s: give one with -i to see which proxy ports carry each connection", c.Inventory)
		return nil
	}
	t, err := inventory.Load(c.Inventory)
	if err != nil {
		return err
	}
	cat.Cluster = t.Cluster.Name
	if !t.Cluster.Mesh.Enabled {
		cat.PathsNote = fmt.Sprintf("the mesh is disabled in %s (mesh: {enabled: false}): no mtlsctl proxy carries these connections", c.Inventory)
		return nil
	}
	_, prev, err := recordedPorts(c)
	if err != nil {
		return err
	}
	if prev == nil {
		cat.PathsNote = fmt.Sprintf("no port assignment recorded in %s yet: run `mtlsctl generate` to assign the proxy ports, then this lists which ones carry each connection", c.State)
		return nil
	}
	a, err := inventory.AssignPorts(t, prev)
	if err != nil {
		return err
	}
	if !a.Equal(prev) {
		fmt.Fprintln(c.stderr(), "note: this assignment is not recorded yet; `mtlsctl generate` records it")
	}
	cat.Paths = consulcfg.EdgePaths(t, a)
	return nil
}
