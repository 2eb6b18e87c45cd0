package distribute

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 8, item 2: the commit replaces a symbolic link in a target's place
// and never writes, copies or moves anything through it.

// Apply replaces a link to a directory and a link to a file with the new
// files, leaving what they point to alone, and backs up the links as
// links: the root-only file behind one is not copied into the backup.
func TestApplyReplacesLinks(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a", server: true})
	first := f.bundles("")
	if _, err := f.apply(t, first, f.opts()); err != nil {
		t.Fatal(err)
	}
	secret := rootOnly(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "inside"), []byte("keep\n"), 0o644)
	f.plant(t, "a", "/etc/consul.d/services.json", dir)
	f.plant(t, "a", "/etc/consul.d/consul.json", secret)

	b := f.bundles("-v2")
	if _, err := f.apply(t, b, f.opts()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/etc/consul.d/services.json", "/etc/consul.d/consul.json"} {
		fi, err := os.Lstat(f.servers["a"].Path(p))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s after apply: %v %v, want a regular file", p, fi, err)
			continue
		}
		if got := f.readNode("a", p); got != string(b[0].File(p).Content) {
			t.Errorf("%s does not hold the new content", p)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "inside" {
		t.Errorf("the directory behind the link changed: %v", ents)
	}
	if got, _ := os.ReadFile(secret); !strings.Contains(string(got), secretMarker) {
		t.Errorf("the file behind the link changed: %q", got)
	}
	if fi, _ := os.Stat(secret); fi.Mode().Perm() != 0o600 {
		t.Errorf("the file behind the link has mode %v", fi.Mode())
	}

	// The backup of the generation replaced holds the links themselves.
	prev := first[0].Generation
	for p, target := range map[string]string{"/etc/consul.d/services.json": dir, "/etc/consul.d/consul.json": secret} {
		bp := f.servers["a"].Path(path.Join("/var/lib/mtlsctl/backup", prev, p))
		fi, err := os.Lstat(bp)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("backup of %s: %v %v, want the link itself", p, fi, err)
			continue
		}
		if got, _ := os.Readlink(bp); got != target {
			t.Errorf("backup of %s links to %s, want %s", p, got, target)
		}
	}
	filepath.Walk(f.servers["a"].Path("/var/lib/mtlsctl/backup"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), secretMarker) {
				t.Errorf("the backup copied the root-only file: %s", p)
			}
		}
		return nil
	})
}

// A re-run of the commit (some staged files already renamed into place)
// renames each remaining one onto its target with rename semantics: a
// target that is a link to a directory is replaced, not moved into.
func TestCommitRerunReplacesLinkToDirectory(t *testing.T) {
	for _, shell := range localShells(t) {
		t.Run(shell, func(t *testing.T) {
			root := t.TempDir()
			const run = "0123456789abcdef"
			jn := &journalNode{Node: "n1", StateDir: "/var/lib/mtlsctl", Stage: stagePrefix + run}
			mk := func(p, content string) {
				t.Helper()
				os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
				if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for _, name := range []string{"done.json", "left.json"} {
				content := "new " + name
				s := sha256.Sum256([]byte(content))
				p := "/etc/consul.d/" + name
				jn.Files = append(jn.Files, journalFile{Path: p, Staged: path.Join("/etc/consul.d", jn.Stage, name), SHA256: hex.EncodeToString(s[:]), Mode: 0o600})
			}
			mk("/etc/consul.d/done.json", "new done.json") // renamed by the interrupted run
			mk(jn.Files[1].Staged, "new left.json")
			victim := t.TempDir()
			os.WriteFile(filepath.Join(victim, "inside"), []byte("keep\n"), 0o600)
			if err := os.Symlink(victim, filepath.Join(root, "/etc/consul.d/left.json")); err != nil {
				t.Fatal(err)
			}
			mk("/var/lib/mtlsctl/lock/run", run+"\n")
			code, out, stderr := runStepLocal(t, shell, root, commitScript(jn, run, 3, nil))
			if code != 0 || !strings.Contains(out, markerCommitted) {
				t.Fatalf("commit exited %d: %s\n%s", code, out, stderr)
			}
			fi, err := os.Lstat(filepath.Join(root, "/etc/consul.d/left.json"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("left.json: %v %v, want the new regular file", fi, err)
			}
			if ents, _ := os.ReadDir(victim); len(ents) != 1 {
				t.Errorf("the commit moved a file into the linked directory: %v", ents)
			}
		})
	}
}

// The mesh step never runs, as root, a firewall script that is a link in
// the place of the one mtlsctl installed.
func TestMeshRefusesLinkedUnloadScript(t *testing.T) {
	root := t.TempDir()
	const run = "0123456789abcdef"
	os.MkdirAll(filepath.Join(root, "/var/lib/mtlsctl/lock"), 0o700)
	os.WriteFile(filepath.Join(root, "/var/lib/mtlsctl/lock/run"), []byte(run+"\n"), 0o600)
	marker := filepath.Join(t.TempDir(), "ran")
	evil := filepath.Join(t.TempDir(), "evil.sh")
	os.WriteFile(evil, []byte("touch "+marker+"\n"), 0o755)
	if err := os.Symlink(evil, filepath.Join(root, "/var/lib/mtlsctl/firewall.sh")); err != nil {
		t.Fatal(err)
	}
	// No units, nothing else: only the unload is under test.
	st := &meshStep{Unload: "/var/lib/mtlsctl/firewall.sh"}
	code, _, stderr := runStepLocal(t, localShells(t)[0], root, meshScript(st, "/var/lib/mtlsctl", run, false))
	if code != exitStatus("EX_MESH") || !strings.Contains(stderr, "the firewall script /var/lib/mtlsctl/firewall.sh is a symbolic link") {
		t.Errorf("mesh exited %d, want EX_MESH naming the link; stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the script behind the link ran")
	}
}
