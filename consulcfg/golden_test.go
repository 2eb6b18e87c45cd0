package consulcfg

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the renderers")

// goldenCases are the clusters whose rendering is pinned in testdata/golden.
var goldenCases = []struct {
	name  string
	input func(testing.TB) Input
}{
	{"five-node-1.6.2", fiveNode},
	{"two-dc-1.13.9", twoDC},
	{"five-node-mesh-1.6.2", fiveNodeMesh},
	{"five-node-mesh-acl-1.6.2", withACL(fiveNodeMesh)},
}

// goldenFiles renders a case as the files of its golden directory: every
// node's tree (as WriteTree writes it), a manifest with each file's mode,
// owner, kind and hash (git does not keep modes), the port report in its
// three formats and, with the mesh on, each bundle's Mesh and the intentions.
func goldenFiles(t *testing.T, in Input) map[string][]byte {
	t.Helper()
	bundles, err := Render(in)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	dir := t.TempDir()
	if err := WriteTree(dir, bundles); err != nil {
		t.Fatalf("WriteTree: %v", err)
	}
	files := readTree(t, dir)

	var man bytes.Buffer
	for _, b := range bundles {
		fmt.Fprintf(&man, "node %s dc=%s server=%t generation=%s\n", b.Node, b.Datacenter, b.Server, b.Generation)
		for _, f := range b.Files {
			fmt.Fprintf(&man, "  %s %s %s:%s %s %s\n", f.Mode, f.Path, f.Owner, f.Group, f.Kind, f.SHA256)
		}
	}
	files["_manifest.txt"] = man.Bytes()

	meshes := map[string]*Mesh{}
	for _, b := range bundles {
		if b.Mesh != nil {
			meshes[b.Node] = b.Mesh
		}
	}
	if len(meshes) > 0 {
		files["_mesh.json"] = mustJSON(t, meshes)
	}
	ints, err := Intentions(in.Topology, in.Ports)
	if err != nil {
		t.Fatalf("Intentions: %v", err)
	}
	if len(ints) > 0 {
		files["_intentions.json"] = mustJSON(t, ints)
	}

	r := PortReport(in.Topology, in.Ports)
	for name, write := range map[string]func(*bytes.Buffer) error{
		"_report/table.txt":   func(w *bytes.Buffer) error { return r.WriteTable(w) },
		"_report/report.json": func(w *bytes.Buffer) error { return r.WriteJSON(w) },
		"_report/apigee.json": func(w *bytes.Buffer) error { return r.WriteApigee(w) },
	} {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		files[name] = buf.Bytes()
	}
	return files
}

// readTree returns every regular file under dir by slash path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			got := goldenFiles(t, tc.input(t))
			dir := filepath.Join("testdata", "golden", tc.name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				for name, b := range got {
					p := filepath.Join(dir, filepath.FromSlash(name))
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			want := readTree(t, dir)
			for name, w := range want {
				g, ok := got[name]
				if !ok {
					t.Errorf("%s: in the golden tree but no longer rendered", name)
					continue
				}
				if !bytes.Equal(g, w) {
					t.Errorf("%s differs from the golden file (run `go test ./consulcfg -update` if the change is intended):\n%s", name, firstDiff(w, g))
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("%s: rendered but not in the golden tree (run `go test ./consulcfg -update`)", name)
				}
			}
		})
	}
}

// firstDiff shows the first line where want and got differ.
func firstDiff(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n  want %q\n  got  %q", i+1, w, g)
		}
	}
	return "(same lines, different bytes)"
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := marshalJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
