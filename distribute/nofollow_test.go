package distribute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
)

// Issue 8, item 2: plan, status and apply never read through a symbolic
// link a node user put in a file's place, and never read more of a node
// file than a diff needs.

const secretMarker = "ROOT-ONLY-SECRET-7f3a"

// rootOnly writes a 0600 file outside the node's root (what a planted
// link points to) and returns its real path.
func rootOnly(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vault", "shadow")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("{\"stolen\": \""+secretMarker+"\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// plant replaces a node file with a symbolic link to target.
func (f *fixture) plant(t *testing.T, node, p, target string) {
	t.Helper()
	real := f.servers[node].Path(p)
	if err := os.Remove(real); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.Symlink(target, real); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) session(t *testing.T) (*Session, *transport.Conn) {
	t.Helper()
	s, err := Open(f.topo, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := s.conn(ctx, f.topo.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func fileOf(t *testing.T, np *NodePlan, p string) FilePlan {
	t.Helper()
	for _, fp := range np.Files {
		if fp.Path == p {
			return fp
		}
	}
	t.Fatalf("no plan for %s", p)
	return FilePlan{}
}

// The reported case: the services file (and the agent config, which plan
// always reads to choose reload or restart) replaced by links to a
// root-only file. The plan says each is a link and will be replaced; no
// byte of the file behind it is in the plan, and the file is not touched.
func TestPlanDoesNotReadThroughLinks(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a", server: true})
	b := f.bundles("")
	if _, err := f.apply(t, b, f.opts()); err != nil {
		t.Fatal(err)
	}
	secret := rootOnly(t)
	f.plant(t, "a", "/etc/consul.d/services.json", secret)
	f.plant(t, "a", "/etc/consul.d/consul.json", secret)
	f.plant(t, "a", "/etc/consul.d/tls/ca.pem", secret)

	res, err := f.plan(t, b, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	np := res.Nodes[0]
	for _, p := range []string{"/etc/consul.d/services.json", "/etc/consul.d/consul.json", "/etc/consul.d/tls/ca.pem"} {
		fp := fileOf(t, np, p)
		if fp.Action != ActionChange {
			t.Errorf("%s: action %s, want change", p, fp.Action)
		}
		want := "is a symbolic link to " + secret + "; apply replaces the link"
		if !strings.Contains(fp.Note, want) {
			t.Errorf("%s: note %q, want it to say %q", p, fp.Note, want)
		}
		if fp.Diff != "" || fp.OldFingerprint != "" {
			t.Errorf("%s: a diff or fingerprint of what the link points to: %+v", p, fp)
		}
	}
	if !np.needsRestart() {
		t.Error("an agent config that could not be read must count as needing a restart")
	}
	js, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), secretMarker) || strings.Contains(string(js), "stolen") {
		t.Errorf("the plan holds the root-only file's content:\n%s", js)
	}
	if !strings.Contains(string(js), `"note":"is a symbolic link to `+secret) {
		t.Errorf("the JSON plan does not say it is a link:\n%s", js)
	}
	if fi, err := os.Stat(secret); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the file behind the link: %v %v", fi, err)
	}

	// status reports the same as drift, and reads no certificate through
	// the link.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, _ := Status(ctx, f.topo, nil, f.opts())
	var reasons []string
	for _, d := range st.Nodes[0].Drift {
		reasons = append(reasons, d.Path+": "+d.Reason)
	}
	if !strings.Contains(strings.Join(reasons, "\n"), "/etc/consul.d/services.json: symbolic link to "+secret) {
		t.Errorf("status drift %q does not name the link", reasons)
	}
	if st.Nodes[0].CAFingerprint != "" {
		t.Errorf("status read a CA fingerprint through the link: %s", st.Nodes[0].CAFingerprint)
	}
}

// A 3 MiB file in a bundle file's place is reported as changed, too large
// to diff, with its size and hash, and is never downloaded; Download
// itself refuses it without reading it.
func TestPlanTooLargeToDiff(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a", server: true})
	b := f.bundles("")
	if _, err := f.apply(t, b, f.opts()); err != nil {
		t.Fatal(err)
	}
	const size = 3 << 20
	for _, p := range []string{"/etc/consul.d/services.json", "/etc/consul.d/consul.json"} {
		if err := os.WriteFile(f.servers["a"].Path(p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f.servers["a"].Path(p), size); err != nil { // sparse
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(make([]byte, size))
	res, err := f.plan(t, b, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/etc/consul.d/services.json", "/etc/consul.d/consul.json"} {
		fp := fileOf(t, res.Nodes[0], p)
		want := fmt.Sprintf("changed, too large to diff (%d bytes, sha256 %s)", size, hex.EncodeToString(sum[:]))
		if fp.Action != ActionChange || fp.Note != want || fp.Diff != "" {
			t.Errorf("%s: %+v, want a change noted %q and no diff", p, fp, want)
		}
	}
	if !res.Nodes[0].needsRestart() {
		t.Error("an agent config too large to read must count as needing a restart")
	}

	_, c := f.session(t)
	got, err := c.Download(context.Background(), []string{"/etc/consul.d/services.json"}, transport.MaxDownload)
	if err != nil {
		t.Fatal(err)
	}
	d := got["/etc/consul.d/services.json"]
	if !errors.Is(d.Err, transport.ErrTooLarge) || d.Content != nil || d.Size != size {
		t.Errorf("Download of a 3 MiB file: err %v, %d bytes read, size %d; want ErrTooLarge, nothing read", d.Err, len(d.Content), d.Size)
	}
}

// Download reads a regular file whole, and refuses, without opening them,
// a link (to a file or a directory), a named pipe (whose open would block)
// and a directory.
func TestDownloadRefusesWhatIsNotARegularFile(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a"})
	srv := f.servers["a"]
	if err := os.MkdirAll(srv.Path("/d/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(srv.Path("/d/plain"), []byte("hello\n"), 0o644)
	os.WriteFile(srv.Path("/d/exact"), make([]byte, 100), 0o644)
	secret := rootOnly(t)
	os.Symlink(secret, srv.Path("/d/link"))
	os.Symlink(filepath.Dir(secret), srv.Path("/d/dirlink"))
	if err := syscall.Mkfifo(srv.Path("/d/fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, c := f.session(t)
	paths := []string{"/d/plain", "/d/exact", "/d/link", "/d/dirlink", "/d/fifo", "/d/sub", "/d/missing"}
	got, err := c.Download(context.Background(), paths, 100)
	if err != nil {
		t.Fatal(err)
	}
	if d := got["/d/plain"]; d.Err != nil || string(d.Content) != "hello\n" {
		t.Errorf("plain: %q %v", d.Content, d.Err)
	}
	if d := got["/d/exact"]; d.Err != nil || len(d.Content) != 100 {
		t.Errorf("a file of exactly the limit: %d bytes, %v", len(d.Content), d.Err)
	}
	for _, p := range []string{"/d/link", "/d/dirlink", "/d/fifo", "/d/sub"} {
		if d := got[p]; !errors.Is(d.Err, transport.ErrNotRegular) || d.Content != nil {
			t.Errorf("%s: err %v, %d bytes; want ErrNotRegular and nothing read", p, d.Err, len(d.Content))
		}
	}
	if d := got["/d/link"]; !strings.Contains(d.Err.Error(), "/d/link is a symbolic link") {
		t.Errorf("link: %v", d.Err)
	}
	if d := got["/d/missing"]; !errors.Is(d.Err, os.ErrNotExist) {
		t.Errorf("missing: %v", d.Err)
	}
}

// A download is shown only when it is what inspect hashed on the node: a
// file swapped between the two is not.
func TestCheckedContent(t *testing.T) {
	sum := func(b string) string { s := sha256.Sum256([]byte(b)); return hex.EncodeToString(s[:]) }
	cases := []struct {
		name     string
		d        transport.Downloaded
		want     string
		wantNote string
	}{
		{"same", transport.Downloaded{Content: []byte("a")}, sum("a"), ""},
		{"swapped", transport.Downloaded{Content: []byte("secret")}, sum("a"), "changed on the node while it was planned"},
		{"no hash", transport.Downloaded{Content: []byte("a")}, "", "changed on the node while it was planned"},
		{"too large", transport.Downloaded{Size: 5 << 20, Err: fmt.Errorf("x: %w", transport.ErrTooLarge)}, sum("a"), "changed, too large to diff (5242880 bytes)"},
		{"link", transport.Downloaded{Err: fmt.Errorf("x: %w", transport.ErrNotRegular)}, sum("a"), "stopped being a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			content, note := checkedContent(tc.d, tc.want)
			if tc.wantNote == "" {
				if note != "" || string(content) != string(tc.d.Content) {
					t.Errorf("content %q note %q", content, note)
				}
				return
			}
			if content != nil || !strings.Contains(note, tc.wantNote) {
				t.Errorf("content %q note %q, want nothing and %q", content, note, tc.wantNote)
			}
		})
	}
}

// inspect reads no node state file through a link or past MAXSTATE bytes:
// each such file is reported and taken as absent.
func TestInspectStateFilesNotFollowed(t *testing.T) {
	for _, shell := range localShells(t) {
		t.Run(shell, func(t *testing.T) {
			root := t.TempDir()
			s := filepath.Join(root, "/var/lib/mtlsctl")
			os.MkdirAll(s, 0o700)
			secret := rootOnly(t)
			os.Symlink(secret, filepath.Join(s, "manifest.json"))
			os.Symlink(secret, filepath.Join(s, "manifest.sha256"))
			if err := os.WriteFile(filepath.Join(s, "generation"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			os.Truncate(filepath.Join(s, "generation"), maxStateBytes+1)
			os.Symlink(filepath.Dir(secret), filepath.Join(s, "lock"))
			os.WriteFile(filepath.Join(filepath.Dir(secret), "run"), []byte(secretMarker+"\n"), 0o600)
			code, out, stderr := runStepLocal(t, shell, root, inspectScript([]string{"/etc/consul.d/consul.json"}, "/var/lib/mtlsctl", true))
			if code != 0 {
				t.Fatalf("inspect exited %d: %s", code, stderr)
			}
			if strings.Contains(out, secretMarker) || strings.Contains(out, "stolen") {
				t.Errorf("inspect printed the file behind a link:\n%s", out)
			}
			r, err := parseInspect(out, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if r.Generation != "" || r.Manifest != nil || r.Lock != nil {
				t.Errorf("read: generation %q manifest %v lock %v", r.Generation, r.Manifest, r.Lock)
			}
			want := []string{
				"/var/lib/mtlsctl/manifest.json is a symbolic link",
				"/var/lib/mtlsctl/manifest.sha256 is a symbolic link",
				"/var/lib/mtlsctl/generation is 1048577 bytes, more than 1048576",
				"/var/lib/mtlsctl/lock is a symbolic link",
			}
			if strings.Join(r.Unread, "\n") != strings.Join(want, "\n") {
				t.Errorf("unread:\n%s\nwant:\n%s", strings.Join(r.Unread, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// A link's target is shown as text the admin's terminal cannot act on.
func TestInspectLinkTargetPrintable(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "/etc/consul.d"), 0o755)
	os.Symlink("/tmp/\x1b]0;pwned\x07x", filepath.Join(root, "/etc/consul.d/a.json"))
	os.Symlink("/tmp/new\nline", filepath.Join(root, "/etc/consul.d/b.json"))
	_, out, _ := runStepLocal(t, localShells(t)[0], root, inspectScript([]string{"/etc/consul.d/a.json", "/etc/consul.d/b.json"}, "/var/lib/mtlsctl", false))
	r, err := parseInspect(out, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.file("/etc/consul.d/a.json").Link; got != "/tmp/?]0;pwned?x" {
		t.Errorf("a.json link shown as %q", got)
	}
	if got := r.file("/etc/consul.d/b.json").Link; got != "?" {
		t.Errorf("b.json link shown as %q", got)
	}
	fp := comparePlan(consulcfg.NewFile("/etc/consul.d/a.json", []byte("{}"), 0o644, consulcfg.KindService), r.file("/etc/consul.d/a.json"))
	if fp.Action != ActionChange || fp.OldMode != "" || !strings.Contains(fp.Note, "symbolic link") {
		t.Errorf("plan for a link: %+v", fp)
	}
}
