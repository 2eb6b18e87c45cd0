package ca

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A node removed from the cluster file has its directory moved, whole, to
// nodes/.archive by generate; nothing of it is deleted, listings and the
// expiry check ignore the archive, and a later generate leaves it alone.
func TestGenerateArchivesRemovedNode(t *testing.T) {
	s, topo := generated(t, 1, 4)
	key, err := os.ReadFile(filepath.Join(s.Dir(), "nodes", "n1-4", keyFile))
	if err != nil {
		t.Fatal(err)
	}
	topo.Nodes = topo.Nodes[:3]
	topo.Cluster.Datacenters[0].Nodes = topo.Cluster.Datacenters[0].Nodes[:3]

	// Expiry lists only what the cluster file uses, before the archive too.
	rows, err := s.Expiry(topo, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == "n1-4" {
			t.Errorf("expiry lists removed node n1-4: %+v", r)
		}
	}
	if len(rows) != 4 {
		t.Errorf("%d rows, want the CA and 3 nodes", len(rows))
	}

	rep, err := s.Generate(topo, genOpts())
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(s.Dir(), "nodes", ".archive", "n1-4-"+t0.UTC().Format("20060102T150405Z"))
	if strings.Join(rep.Removed, ",") != "n1-4" || len(rep.Archived) != 1 || rep.Archived[0].Node != "n1-4" || rep.Archived[0].Path != want {
		t.Fatalf("removed %v archived %+v, want n1-4 at %s", rep.Removed, rep.Archived, want)
	}
	if !rep.Changed() {
		t.Error("archiving a node is a change")
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "nodes", "n1-4")); !os.IsNotExist(err) {
		t.Errorf("nodes/n1-4 still there: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(want, keyFile))
	if err != nil || !bytes.Equal(got, key) {
		t.Errorf("archived key: %v (same bytes: %v)", err, bytes.Equal(got, key))
	}
	if m := mode(t, filepath.Join(s.Dir(), "nodes", ".archive")); m != 0o700 {
		t.Errorf("archive dir mode %o, want 0700", m)
	}
	if m := mode(t, filepath.Join(want, keyFile)); m != 0o600 {
		t.Errorf("archived key mode %o, want 0600", m)
	}
	if nodes, _ := s.storedNodes(); strings.Join(nodes, ",") != "n1-1,n1-2,n1-3" {
		t.Errorf("stored nodes %v", nodes)
	}
	if all, _ := s.Expiry(nil, t0); len(all) != 4 {
		t.Errorf("expiry of every stored node: %d rows, want 4 (the archive is no node)", len(all))
	}
	if _, err := Open(s.Dir(), OpenOptions{}); err != nil {
		t.Errorf("open after archive: %v", err)
	}

	// The next run has nothing to archive and changes nothing.
	before := treeHash(t, s.Dir())
	rep, err = s.Generate(topo, genOpts())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 0 || len(rep.Archived) != 0 || rep.Changed() {
		t.Errorf("second run: removed %v archived %v changed %v", rep.Removed, rep.Archived, rep.Changed())
	}
	if d := diffTrees(before, treeHash(t, s.Dir())); len(d) > 0 {
		t.Errorf("second run changed %v", d)
	}

	// The node comes back and goes again in the same second: the first
	// archive is kept, the second gets a name of its own.
	s2, topo2 := generated(t, 1, 2)
	for range 2 {
		if _, err := s2.Generate(topo2, genOpts()); err != nil {
			t.Fatal(err)
		}
		short := *topo2
		short.Nodes = short.Nodes[:1]
		rep, err := s2.Generate(&short, genOpts())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Archived) != 1 {
			t.Fatalf("archived %+v", rep.Archived)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(s2.Dir(), "nodes", ".archive", "n1-2-*")); len(m) != 2 {
		t.Errorf("archives %v, want two", m)
	}
}
