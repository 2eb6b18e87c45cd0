package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
)

// The no-follow tests run on their own subnet and prefix, so that they can
// run while other e2e tests use theirs.
const (
	nrSubnet = "198.18.140.0/24"
	nrPrefix = "nr"
	nrSecret = "ROOT-ONLY-SECRET-5c1e"
)

// Issue 8, item 2, as reported, on a real OpenSSH node: a node user
// replaces mtlsctl-services.json with a link to a root-only file, and the
// agent config with a link to a root-only directory. plan (text and JSON)
// says each is a link that apply replaces and shows nothing of what is
// behind it; apply replaces both links with the rendered files, leaves
// the file and directory behind them alone and backs the links up as
// links. A 3 MiB file in the services file's place is then reported as
// too large to diff.
func TestPlanApplyNeverFollowLinks(t *testing.T) {
	e := newDS(t, testnet.Options{Names: []string{"nr1", "nr2", "nr3"}, Subnet: nrSubnet, Prefix: nrPrefix}, dsCluster{})
	nd := e.net.Node("nr1")
	e.mustRun(0, "apply", "--yes")

	vault := nd.Path("/root/vault")
	if err := os.Mkdir(vault, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(vault, "shadow")
	if err := os.WriteFile(secret, []byte("{\"stolen\": \""+nrSecret+"\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := factsOf(t, secret)
	const services, agent = "/etc/consul.d/mtlsctl-services.json", "/etc/consul.d/mtlsctl-agent.json"
	for p, target := range map[string]string{services: "/root/vault/shadow", agent: "/root/vault"} {
		os.Remove(nd.Path(p))
		if err := os.Symlink(target, nd.Path(p)); err != nil {
			t.Fatal(err)
		}
	}

	for _, args := range [][]string{{"plan"}, {"-o", "json", "plan"}} {
		r := e.run(args...)
		if r.code != 0 {
			t.Fatalf("want exit 0\n%s", r)
		}
		if strings.Contains(r.out(), nrSecret) || strings.Contains(r.out(), "stolen") {
			t.Errorf("plan shows the root-only file behind the link:\n%s", r)
		}
		for _, want := range []string{
			"is a symbolic link to /root/vault/shadow; apply replaces the link",
			"is a symbolic link to /root/vault; apply replaces the link",
		} {
			if !strings.Contains(r.out(), want) {
				t.Errorf("plan does not say %q:\n%s", want, r)
			}
		}
	}

	e.mustRun(0, "apply", "--yes")
	want := e.render()["nr1"]
	for _, p := range []string{services, agent} {
		fi, err := os.Lstat(nd.Path(p))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s after apply: %v %v, want the rendered file in place of the link", p, fi, err)
			continue
		}
		if got, _ := os.ReadFile(nd.Path(p)); string(got) != string(want[p].content) {
			t.Errorf("%s does not hold the rendered content", p)
		}
	}
	if got := factsOf(t, secret); !got.same(before) {
		t.Errorf("the root-only file behind the link changed: %+v, was %+v", got, before)
	}
	if ents, _ := os.ReadDir(vault); len(ents) != 1 {
		t.Errorf("apply wrote into the directory behind the link: %v", ents)
	}
	filepath.Walk(nd.Path("/var/lib/mtlsctl/backup"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), nrSecret) {
				t.Errorf("the backup copied the root-only file: %s", p)
			}
		}
		return nil
	})
	e.assertClean()

	// A file far larger than any diff needs: reported, never read.
	big := nd.Path(services)
	if err := os.Truncate(big, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 3<<20); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(0, "plan")
	if !strings.Contains(r.out(), "changed, too large to diff (3145728 bytes, sha256 ") {
		t.Errorf("plan does not report the 3 MiB file as too large to diff:\n%s", r)
	}
	e.mustRun(0, "apply", "--yes")
	if fi, err := os.Lstat(big); err != nil || fi.Size() != int64(len(want[services].content)) {
		t.Errorf("%s after apply: %v %v", services, fi, err)
	}
}
