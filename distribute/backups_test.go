package distribute

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// backupGenerations lists the backup generation directories of a sandbox
// node, sorted.
func (f *fixture) backupGenerations(t *testing.T, node string) []string {
	t.Helper()
	ents, err := os.ReadDir(f.servers[node].Path("/var/lib/mtlsctl/backup"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Five applies with keep 2 leave the two newest backup generations, the
// keys in them 0600 in 0700 directories; a link planted in the backup
// directory is not followed, and a backup made before generations were
// numbered goes first.
func TestBackupsPrunedToKeep(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a", server: true})
	f.topo.Cluster.Backups.Keep = 2
	srv := f.servers["a"]
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "precious"), []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bdir := srv.Path("/var/lib/mtlsctl/backup")
	if err := os.MkdirAll(filepath.Join(bdir, "legacy"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(bdir, "elsewhere")); err != nil {
		t.Fatal(err)
	}

	var gens []string
	var bundles [][]byte // agent-key.pem content of each generation
	for i := 1; i <= 5; i++ {
		b := f.bundles("-v" + string(rune('0'+i)))
		if _, err := f.apply(t, b, f.opts()); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		gens = append(gens, b[0].Generation)
		bundles = append(bundles, b[0].File("/etc/consul.d/tls/agent-key.pem").Content)
		if i == 2 {
			// The first commit backed up what the node held before
			// (nothing) as "initial"; the second one's backup makes three,
			// and the unnumbered "legacy" counts as the oldest.
			want := []string{"initial", gens[0]}
			sort.Strings(want)
			if got := f.backupGenerations(t, "a"); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("after the second apply: backups %v, want %v", got, want)
			}
		}
	}
	// Apply 5 replaced generation 4, apply 4 replaced generation 3.
	want := []string{gens[2], gens[3]}
	sort.Strings(want)
	if got := f.backupGenerations(t, "a"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("backups %v, want the newest two %v", got, want)
	}
	for _, g := range []int{2, 3} {
		dir := filepath.Join(bdir, gens[g])
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, want a 0700 directory", dir, err)
		}
		for _, p := range []string{"/etc/consul.d/tls/agent-key.pem", "/etc/consul.d/consul.json"} {
			fi, err := os.Stat(filepath.Join(dir, p))
			if err != nil {
				t.Errorf("generation %d backup: %v", g+1, err)
				continue
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("generation %d backup of %s: mode %04o, want 0600", g+1, p, fi.Mode().Perm())
			}
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "/etc/consul.d/tls/agent-key.pem")); string(got) != string(bundles[g]) {
			t.Errorf("backup %s does not hold generation %d's key", gens[g], g+1)
		}
	}
	if fi, err := os.Lstat(filepath.Join(bdir, "elsewhere")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the planted link: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(outside, "precious")); err != nil || string(got) != "keep me\n" {
		t.Errorf("pruning followed the planted link: %q %v", got, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := Status(ctx, f.topo, nil, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Nodes[0].Backups; n != 2 {
		t.Errorf("status: %d backup generations, want 2", n)
	}
}

// A cluster built in code without backups.keep keeps the default three.
func TestBackupsDefaultKeep(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a", server: true})
	var gens []string
	for i := 1; i <= 5; i++ {
		b := f.bundles("-v" + string(rune('0'+i)))
		if _, err := f.apply(t, b, f.opts()); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		gens = append(gens, b[0].Generation)
	}
	want := []string{gens[1], gens[2], gens[3]}
	sort.Strings(want)
	if got := f.backupGenerations(t, "a"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("backups %v, want the newest three %v", got, want)
	}
}
