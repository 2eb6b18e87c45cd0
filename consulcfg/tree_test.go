package consulcfg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteTreeModesAndContent(t *testing.T) {
	in := fiveNode(t) // consul group: key and agent config 0640 in the bundle
	bundles, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if err := WriteTree(dir, bundles); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("DIR mode %v (%v), want 0700", fi.Mode(), err)
	}
	for _, b := range bundles {
		for _, f := range b.Files {
			p := filepath.Join(dir, b.Node, filepath.FromSlash(f.Path))
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			want := f.Mode
			if f.Kind == KindKey {
				want = 0o600
			}
			if fi.Mode() != want {
				t.Errorf("%s/%s: mode %v, want %v", b.Node, f.Path, fi.Mode(), want)
			}
			got, _ := os.ReadFile(p)
			if string(got) != string(f.Content) {
				t.Errorf("%s/%s: content differs", b.Node, f.Path)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(bundles) {
		t.Errorf("%d entries in DIR, want one per node (no temp dirs left)", len(entries))
	}
}

func TestWriteTreeReplaces(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// n1: an old tree with a stale file; n2: a symlink to outside DIR.
	if err := os.MkdirAll(filepath.Join(dir, "n1", "stale"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "n2")); err != nil {
		t.Fatal(err)
	}
	bundles := []Bundle{
		{Node: "n1", Files: []File{NewFile("/etc/a.json", []byte("new\n"), 0o644, KindConfig)}},
		{Node: "n2", Files: []File{NewFile("/keep", []byte("overwritten?\n"), 0o644, KindOther)}},
	}
	for i := range 2 { // twice: the second run replaces the first
		if err := WriteTree(dir, bundles); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "n1", "stale")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("stale file survived")
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "keep")); string(b) != "x" {
		t.Error("WriteTree wrote through a symlink outside DIR")
	}
	if fi, err := os.Lstat(filepath.Join(dir, "n2")); err != nil || !fi.IsDir() {
		t.Errorf("n2 is not a plain directory now: %v %v", fi, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d entries, want 2 (no temp dirs left)", len(entries))
	}
}

func TestWriteTreeRefuses(t *testing.T) {
	ok := []File{NewFile("/etc/x", nil, 0o644, KindOther)}
	tests := []struct {
		name    string
		bundles []Bundle
		text    string
	}{
		{"empty node", []Bundle{{Node: "", Files: ok}}, "node name"},
		{"dot-dot node", []Bundle{{Node: "..", Files: ok}}, "node name"},
		{"slash node", []Bundle{{Node: "a/b", Files: ok}}, "node name"},
		{"hidden node", []Bundle{{Node: ".n1", Files: ok}}, "node name"},
		{"duplicate node", []Bundle{{Node: "n1", Files: ok}, {Node: "n1", Files: ok}}, "twice"},
		{"relative path", []Bundle{{Node: "n1", Files: []File{NewFile("etc/x", nil, 0o644, KindOther)}}}, "absolute"},
		{"escaping path", []Bundle{{Node: "n1", Files: []File{NewFile("/etc/../../x", nil, 0o644, KindOther)}}}, "clean"},
		{"root path", []Bundle{{Node: "n1", Files: []File{NewFile("/", nil, 0o644, KindOther)}}}, "absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteTree(dir, tc.bundles)
			if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("WriteTree = %v, want ErrBadBundle saying %q", err, tc.text)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("wrote %d entries before refusing", len(entries))
			}
		})
	}
}

func TestWriteTreeConflictingPaths(t *testing.T) {
	dir := t.TempDir()
	b := Bundle{Node: "n1", Files: []File{
		NewFile("/etc/a", []byte("file"), 0o644, KindOther),
		NewFile("/etc/a/b", []byte("under a file"), 0o644, KindOther),
	}}
	err := WriteTree(dir, []Bundle{b})
	var ne *NodeError
	if !errors.As(err, &ne) || ne.Node != "n1" {
		t.Fatalf("WriteTree = %v, want a NodeError for n1", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %d entries behind", len(entries))
	}
}

// TestWriteTreeUmask checks that modes are exact whatever the umask: a
// narrowing umask is undone, a permissive one does not widen private keys.
func TestWriteTreeUmask(t *testing.T) {
	bundles := []Bundle{{Node: "n1", Files: []File{
		NewFile("/etc/consul.d/tls/ca.pem", []byte("ca\n"), 0o644, KindCACert),
		NewFile("/etc/consul.d/tls/agent-key.pem", []byte("key\n"), 0o640, KindKey),
		NewFile("/etc/consul.d/agent.json", []byte("{}\n"), 0o640, KindConfig),
	}}}
	for _, tc := range []struct {
		name  string
		umask int
	}{{"narrowing", 0o077}, {"permissive", 0o000}, {"usual", 0o022}} {
		t.Run(tc.name, func(t *testing.T) {
			old := syscall.Umask(tc.umask)
			t.Cleanup(func() { syscall.Umask(old) })
			dir := filepath.Join(t.TempDir(), "out")
			if err := WriteTree(dir, bundles); err != nil {
				t.Fatal(err)
			}
			for _, f := range bundles[0].Files {
				want := f.Mode
				if f.Kind == KindKey {
					want = 0o600
				}
				fi, err := os.Lstat(filepath.Join(dir, "n1", filepath.FromSlash(f.Path)))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != want {
					t.Errorf("%s: mode %v, want %v", f.Path, fi.Mode(), want)
				}
			}
		})
	}
}

// TestWriteTreeFirstError checks that, with nodes written concurrently, the
// error names the first failing node in bundle order and no temporary
// directory is left behind.
func TestWriteTreeFirstError(t *testing.T) {
	dir := t.TempDir()
	var bundles []Bundle
	for i := range 40 {
		files := []File{NewFile("/etc/a", []byte("file"), 0o644, KindOther)}
		if i == 7 || i == 8 || i == 31 {
			files = append(files, NewFile("/etc/a/b", []byte("under a file"), 0o644, KindOther))
		}
		bundles = append(bundles, Bundle{Node: fmt.Sprintf("n%02d", i), Files: files})
	}
	err := WriteTree(dir, bundles)
	var ne *NodeError
	if !errors.As(err, &ne) || ne.Node != "n07" {
		t.Fatalf("WriteTree = %v, want a NodeError for n07", err)
	}
	entries, _ := os.ReadDir(dir)
	for i, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary %s left behind", e.Name())
		}
		if i < 7 && e.Name() != bundles[i].Node {
			t.Errorf("entry %d is %s, want %s (nodes before the failure are written)", i, e.Name(), bundles[i].Node)
		}
	}
}
