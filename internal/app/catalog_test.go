package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/examples"
	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// catalogJSON runs PortsCatalog with JSON output and decodes it.
func catalogJSON(t *testing.T, c Common, name string) (consulcfg.Catalog, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	if err := PortsCatalog(c, name, "json"); err != nil {
		t.Fatalf("PortsCatalog(%s): %v", name, err)
	}
	var cat consulcfg.Catalog
	if err := json.Unmarshal(out.Bytes(), &cat); err != nil {
		t.Fatalf("PortsCatalog(%s) JSON: %v\n%s", name, err, out.String())
	}
	return cat, errOut.String()
}

// writeExample writes examples/edge-5.yaml, changed by edit, to dir.
func writeExample(t *testing.T, dir string, edit func(*inventory.Cluster)) string {
	t.Helper()
	data, err := examples.FS.ReadFile("edge-5.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := inventory.Parse("edge-5.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	edit(topo.Cluster)
	yml, err := inventory.Marshal(topo.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "cluster.yaml")
	if err := atomicfile.WriteFile(inv, yml, 0o644); err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestPortsCatalog(t *testing.T) {
	dir := t.TempDir()
	none := Common{Inventory: filepath.Join(dir, "absent.yaml"), State: filepath.Join(dir, "state")}

	t.Run("hybrid needs no cluster", func(t *testing.T) {
		cat, _ := catalogJSON(t, none, "hybrid")
		if cat.Name != "hybrid" || len(cat.Connections) == 0 || cat.Paths != nil || cat.PathsNote != "" {
			t.Errorf("hybrid = %+v", cat)
		}
		var out bytes.Buffer
		c := none
		c.Stdout = &out
		if err := PortsCatalog(c, "hybrid", "table"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "Apigee hybrid runtime plane") || strings.Contains(out.String(), "mesh paths") {
			t.Errorf("hybrid table:\n%s", out.String())
		}
	})

	t.Run("edge without a cluster file", func(t *testing.T) {
		cat, _ := catalogJSON(t, none, "edge")
		if len(cat.Connections) == 0 || cat.Paths != nil || !strings.Contains(cat.PathsNote, "no cluster file at "+none.Inventory) {
			t.Errorf("edge without cluster: %d rows, %d paths, note %q", len(cat.Connections), len(cat.Paths), cat.PathsNote)
		}
	})

	t.Run("edge with the mesh disabled", func(t *testing.T) {
		c := none
		c.Inventory = writeExample(t, t.TempDir(), func(cl *inventory.Cluster) { cl.Mesh.Enabled = false })
		cat, _ := catalogJSON(t, c, "edge")
		if cat.Paths != nil || !strings.Contains(cat.PathsNote, "mesh is disabled") {
			t.Errorf("mesh disabled: %d paths, note %q", len(cat.Paths), cat.PathsNote)
		}
	})

	c := none
	c.Inventory = writeExample(t, dir, func(*inventory.Cluster) {})
	t.Run("edge before generate", func(t *testing.T) {
		cat, _ := catalogJSON(t, c, "edge")
		if cat.Paths != nil || !strings.Contains(cat.PathsNote, "run `mtlsctl generate`") {
			t.Errorf("no state: %d paths, note %q", len(cat.Paths), cat.PathsNote)
		}
	})

	t.Run("edge after generate", func(t *testing.T) {
		g := c
		g.Stdout, g.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
		if err := Generate(g, GenerateOptions{}); err != nil {
			t.Fatal(err)
		}
		st, err := ca.Open(c.State, ca.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a, err := st.Ports()
		if err != nil {
			t.Fatal(err)
		}
		cat, stderr := catalogJSON(t, c, "edge")
		if cat.PathsNote != "" || stderr != "" || cat.Cluster == "" {
			t.Errorf("recorded state: note %q, stderr %q, cluster %q", cat.PathsNote, stderr, cat.Cluster)
		}
		i := slices.IndexFunc(cat.Paths, func(p consulcfg.MeshPath) bool {
			return p.Source == "router" && p.Destination == "zookeeper" && p.Port == 2181 && p.SourceNode != p.DestinationNode
		})
		if i < 0 {
			t.Fatalf("no router -> zookeeper 2181 path in %d paths", len(cat.Paths))
		}
		p := cat.Paths[i]
		if p.ProxyPort != a.Ports(p.DestinationNode, "zookeeper")[0] || p.EgressPort != a.Ports(p.SourceNode, inventory.Egress)[0] {
			t.Errorf("path %+v does not carry the recorded ports", p)
		}
	})

	if err := PortsCatalog(none, "cloud", "table"); !errors.Is(err, consulcfg.ErrUnknownCatalog) {
		t.Errorf("PortsCatalog(cloud) = %v", err)
	}
}
