package distribute

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// localShells are the shells a node may have as sh that are installed here.
func localShells(t *testing.T) []string {
	var out []string
	for _, sh := range []string{"dash", "bash"} {
		if _, err := exec.LookPath(sh); err == nil {
			out = append(out, sh)
		}
	}
	if len(out) == 0 {
		if _, err := exec.LookPath("sh"); err != nil {
			t.Skip("no sh")
		}
		out = append(out, "sh")
	}
	return out
}

// runStepLocal runs a step with a local shell as the remote driver runs it
// (set -u, umask 077, R the node's root) and returns its exit status and
// output.
func runStepLocal(t *testing.T, shell, root, script string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(shell, "-c", "set -u\nR=\"$MTLSCTL_ROOT\"\numask 077\n"+script)
	cmd.Env = append(os.Environ(), "MTLSCTL_ROOT="+root)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// stageNodeFor is a journal node whose files go into dirs, with the node
// state directory /var/lib/mtlsctl.
func stageNodeFor(dirs ...string) *journalNode {
	jn := &journalNode{Node: "n1", StateDir: "/var/lib/mtlsctl", Stage: stagePrefix + "0123456789abcdef"}
	for _, d := range dirs {
		p := path.Join(d, "f.json")
		jn.Files = append(jn.Files, journalFile{Path: p, Staged: path.Join(d, jn.Stage, "f.json"), SHA256: strings.Repeat("0", 64), Mode: 0o600})
	}
	return jn
}

// Staging refuses, before it writes anything, directories in which a user
// other than root (or the user running the steps) could swap entries: a
// rename of the fresh staging directory and a symbolic link in its place
// would make root write, chmod and chown a file of that user's choosing.
func TestPrepareRefusesUnsafeDirs(t *testing.T) {
	asRoot := os.Geteuid() == 0
	type layout func(t *testing.T, root string)
	mkdir := func(t *testing.T, root, p string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	link := func(t *testing.T, root, target, p string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	chown := func(t *testing.T, root, p string) {
		t.Helper()
		if err := os.Lchown(filepath.Join(root, p), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name     string
		root     bool // needs root (chown to another user)
		dirs     []string
		deletes  []string // files the mesh step deletes
		setup    layout
		want     []string // in stderr; nil: the step succeeds
		stagedIn []string // where the staging directories must then be
	}{
		{name: "closed directories", dirs: []string{"/etc/consul.d", "/etc/consul.d/tls"},
			setup:    func(t *testing.T, r string) { mkdir(t, r, "/etc/consul.d", 0o755) },
			stagedIn: []string{"/etc/consul.d", "/etc/consul.d/tls"}},
		{name: "world-writable target", dirs: []string{"/etc/consul.d", "/etc/consul.d/tls"},
			setup: func(t *testing.T, r string) { mkdir(t, r, "/etc/consul.d", 0o777) },
			want:  []string{"/etc/consul.d is writable by group or others (mode 777): ", "chown root /etc/consul.d; chmod go-w /etc/consul.d"}},
		{name: "group-writable ancestor", dirs: []string{"/etc/consul.d"},
			setup: func(t *testing.T, r string) { mkdir(t, r, "/etc/consul.d", 0o755); mkdir(t, r, "/etc", 0o775) },
			want:  []string{"/etc (on the way to /etc/consul.d) is writable by group or others (mode 775): another user could swap its entries"}},
		{name: "link into a writable directory", dirs: []string{"/etc/consul.d"},
			setup: func(t *testing.T, r string) {
				mkdir(t, r, "/etc", 0o755)
				mkdir(t, r, "/data/consul", 0o755)
				os.Chmod(filepath.Join(r, "/data"), 0o777)
				link(t, r, "/data/consul", "/etc/consul.d")
			},
			want: []string{"/data (on the way to /etc/consul.d) is writable by group or others (mode 777)"}},
		{name: "relative link into a closed directory", dirs: []string{"/etc/consul.d"},
			setup: func(t *testing.T, r string) {
				mkdir(t, r, "/etc", 0o755)
				mkdir(t, r, "/data/consul", 0o755)
				link(t, r, "../data/consul", "/etc/consul.d")
			},
			stagedIn: []string{"/data/consul"}},
		{name: "sticky ancestor, our own entry", dirs: []string{"/scratch/consul"},
			setup: func(t *testing.T, r string) {
				mkdir(t, r, "/scratch/consul", 0o755)
				os.Chmod(filepath.Join(r, "/scratch"), os.ModeSticky|0o777)
			},
			stagedIn: []string{"/scratch/consul"}},
		{name: "sticky ancestor, missing entry", dirs: []string{"/scratch/new/consul"},
			setup: func(t *testing.T, r string) { mkdir(t, r, "/scratch", os.ModeSticky|0o777) },
			want:  []string{"/scratch (on the way to /scratch/new/consul) is writable by group or others (mode 1777)"}},
		{name: "node state directory under a writable one", dirs: []string{"/etc/consul.d"},
			setup: func(t *testing.T, r string) { mkdir(t, r, "/etc/consul.d", 0o755); mkdir(t, r, "/var/lib", 0o777) },
			want:  []string{"/var/lib (on the way to /var/lib/mtlsctl) is writable by group or others (mode 777)"}},
		{name: "a file to delete in a writable directory", dirs: []string{"/etc/consul.d"}, deletes: []string{"/etc/systemd/system/old.service"},
			setup: func(t *testing.T, r string) {
				mkdir(t, r, "/etc/consul.d", 0o755)
				mkdir(t, r, "/etc/systemd/system", 0o777)
			},
			want: []string{"/etc/systemd/system is writable by group or others (mode 777)"}},
		{name: "link loop", dirs: []string{"/etc/consul.d"},
			setup: func(t *testing.T, r string) { mkdir(t, r, "/etc", 0o755); link(t, r, "consul.d", "/etc/consul.d") },
			want:  []string{"too many symbolic links under /etc/consul.d"}},
		{name: "target owned by another user (HashiCorp's layout)", root: true, dirs: []string{"/etc/consul.d", "/etc/consul.d/tls"},
			setup: func(t *testing.T, r string) { mkdir(t, r, "/etc/consul.d", 0o755); chown(t, r, "/etc/consul.d") },
			want:  []string{"/etc/consul.d is owned by ", "(uid 65534): another user could swap its entries for links that root would write through"}},
		{name: "another user's entry in a sticky directory", root: true, dirs: []string{"/scratch/consul"},
			setup: func(t *testing.T, r string) {
				mkdir(t, r, "/scratch/consul", 0o755)
				os.Chmod(filepath.Join(r, "/scratch"), os.ModeSticky|0o777)
				chown(t, r, "/scratch/consul")
			},
			want: []string{"/scratch (on the way to /scratch/consul) is writable by group or others (mode 1777)", "/scratch/consul is owned by "}},
		{name: "another user's link in a closed directory is fine", root: true, dirs: []string{"/etc/consul.d"},
			setup: func(t *testing.T, r string) {
				mkdir(t, r, "/etc", 0o755)
				mkdir(t, r, "/data/consul", 0o755)
				link(t, r, "../data/consul", "/etc/consul.d")
				chown(t, r, "/etc/consul.d") // only root could replace it
			},
			stagedIn: []string{"/data/consul"}},
	}
	for _, tc := range cases {
		for _, shell := range localShells(t) {
			t.Run(shell+"/"+tc.name, func(t *testing.T) {
				if tc.root && !asRoot {
					t.Skip("needs root to give a directory another owner")
				}
				root := t.TempDir()
				tc.setup(t, root)
				jn := stageNodeFor(tc.dirs...)
				if tc.deletes != nil {
					jn.Mesh = &meshStep{Deletes: tc.deletes}
				}
				code, _, stderr := runStepLocal(t, shell, root, prepareScript(jn, "0123456789abcdef", "test", ""))
				if tc.want == nil {
					if code != 0 {
						t.Fatalf("prepare exited %d: %s", code, stderr)
					}
					for _, d := range tc.stagedIn {
						fi, err := os.Lstat(filepath.Join(root, d, jn.Stage))
						if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
							t.Errorf("no 0700 staging directory in %s: %v", d, err)
						}
					}
					return
				}
				if code != exitStatus("EX_UNSAFE_DIR") {
					t.Fatalf("prepare exited %d, want EX_UNSAFE_DIR; stderr:\n%s", code, stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr does not say %q:\n%s", w, stderr)
					}
				}
				// Nothing was written: no state directory, lock or staging.
				filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
					if err == nil && (strings.HasPrefix(d.Name(), ".mtlsctl-") || d.Name() == "mtlsctl") {
						t.Errorf("refused, but made %s", strings.TrimPrefix(p, root))
					}
					return nil
				})
			})
		}
	}
}

// The verify step never chmods or chowns through a symbolic link (nor
// anything but a regular file) in place of a staged file.
func TestVerifyRefusesLinkedStagedFile(t *testing.T) {
	root := t.TempDir()
	jn := stageNodeFor("/etc/consul.d")
	stage := filepath.Join(root, "/etc/consul.d", jn.Stage)
	if err := os.MkdirAll(stage, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(stage, "f.json")); err != nil {
		t.Fatal(err)
	}
	jn.Files[0].Mode = 0o644
	jn.Files[0].Owner = "nobody"
	code, _, stderr := runStepLocal(t, localShells(t)[0], root, verifyScript(jn, verifyOpts{configDir: "/etc/consul.d", runID: "0123456789abcdef"}))
	if code != exitStatus("EX_CHMOD") || !strings.Contains(stderr, "is not a regular file") {
		t.Fatalf("verify exited %d, want EX_CHMOD naming the file; stderr:\n%s", code, stderr)
	}
	fi, err := os.Stat(victim)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the link's target was changed: %v %v", fi.Mode(), err)
	}
}

// Through apply on a sandbox node: a target directory other users can write
// in stops the apply before anything is written, with ErrUnsafeDir naming
// the directory, and no node changes.
func TestApplyRefusesWritableTargetDir(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", server: true}, nodeSpec{name: "c1"})
	b := f.bundles("")
	dir := path.Dir(b[0].Files[0].Path)
	if err := os.MkdirAll(f.servers["c1"].Path(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.servers["c1"].Path(dir), 0o777); err != nil {
		t.Fatal(err)
	}
	res, err := f.apply(t, b, f.opts())
	if !errors.Is(err, ErrUnsafeDir) {
		t.Fatalf("apply: %v, want ErrUnsafeDir", err)
	}
	if !strings.Contains(err.Error(), dir+" is writable by group or others") {
		t.Errorf("the error does not name %s: %v", dir, err)
	}
	var ne *NodeError
	if !errors.As(err, &ne) || ne.Node != "c1" {
		t.Errorf("the error is not c1's: %v", err)
	}
	for _, n := range res.Nodes {
		if n.Outcome == OutcomeCommitted {
			t.Errorf("%s was committed", n.Node)
		}
	}
	for _, node := range []string{"s1", "c1"} {
		if left := f.stagingLeft(node); len(left) > 0 {
			t.Errorf("%s: left behind %v", node, left)
		}
		for _, fl := range b[0].Files {
			if _, err := os.Stat(f.servers[node].Path(fl.Path)); err == nil {
				t.Errorf("%s: %s was written", node, fl.Path)
			}
		}
	}
}
