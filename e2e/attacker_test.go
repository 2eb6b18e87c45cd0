package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
)

// The attacker tests run on their own subnet and prefix, so that they can
// run while other e2e tests use theirs.
const (
	atSubnet = "198.18.90.0/24"
	atPrefix = "at"
	nobody   = 65534
)

// buildStageAttacker builds e2e/testdata/stageattack into the node's
// stand-in bin directory (0755 on a 0755 path: an unprivileged user can run
// it there) and returns its node path.
func buildStageAttacker(t *testing.T, nd *testnet.Node) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(here))
	nodePath := testnet.BinDir + "/stageattack"
	cmd := exec.Command("go", "build", "-o", nd.Path(nodePath), "./e2e/testdata/stageattack")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build stageattack: %v\n%s", err, out)
	}
	return nodePath
}

// fileFacts is what must not change about the victim file.
type fileFacts struct {
	content  []byte
	mode     os.FileMode
	uid, gid uint32
}

func (f fileFacts) same(g fileFacts) bool {
	return bytes.Equal(f.content, g.content) && f.mode == g.mode && f.uid == g.uid && f.gid == g.gid
}

func factsOf(t *testing.T, p string) fileFacts {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileFacts{content: b, mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
}

// Issue 8, item 1, exactly as reported: an unprivileged node user who can
// write in /etc/consul.d (HashiCorp's layout makes it the consul user's)
// watches it with inotify, renames the fresh .mtlsctl-stage-* directory
// away and puts a symbolic link to a root-only directory in its place. The
// apply used to report success after root had written the agent config and
// the gossip key into the root-only file behind the link. Now the node
// refuses the directory before it writes anything, naming it, and no node
// changes; once the directory is root's, the same attacker can no longer
// touch the staging directory and the apply goes through.
func TestDistributeStagingAttacker(t *testing.T) {
	e := newDS(t, testnet.Options{Names: []string{"at1", "at2", "at3"}, Subnet: atSubnet, Prefix: atPrefix}, dsCluster{})
	at1 := e.net.Node("at1")

	// A root-only file named like a staged file, in a root-only directory
	// the attacker cannot even list.
	vault := at1.Path("/root/vault")
	if err := os.Mkdir(vault, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(vault, "mtlsctl-agent.json")
	if err := os.WriteFile(victim, []byte("root-only, not for the consul user\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := factsOf(t, victim)

	// HashiCorp's layout: /etc/consul.d belongs to the agent's user.
	confDir := at1.Path("/etc/consul.d")
	if err := os.Chown(confDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(confDir, 0o755); err != nil {
		t.Fatal(err)
	}

	bin := buildStageAttacker(t, at1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := at1.Start(ctx, "stageattack", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "/etc/consul.d", "/root/vault")
	if err != nil {
		t.Fatal(err)
	}
	attackLog := func() string { b, _ := os.ReadFile(p.LogFile); return string(b) }
	if !waitFor(10*time.Second, func() bool { return strings.Contains(attackLog(), "watching /etc/consul.d") }) {
		t.Fatalf("the attacker did not start watching:\n%s", attackLog())
	}
	if out, err := at1.Exec(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "touch", "/etc/consul.d/.probe"); err != nil {
		t.Fatalf("the attacker's user cannot write in /etc/consul.d, so this is not the reported setup: %v %s", err, out)
	}
	os.Remove(filepath.Join(confDir, ".probe"))

	r := e.mustRun(1, "apply", "--yes")
	t.Logf("refused:\n%s", r)
	for _, want := range []string{"at1", "/etc/consul.d is owned by nobody (uid 65534)", "chown root /etc/consul.d", "no node was changed", "hint: "} {
		if !strings.Contains(r.out(), want) {
			t.Errorf("apply output does not say %q:\n%s", want, r)
		}
	}
	if got := factsOf(t, victim); !got.same(before) {
		t.Errorf("the root-only file behind the link changed: %+v, was %+v", got, before)
	}
	if log := attackLog(); strings.Contains(log, "saw ") {
		t.Errorf("a staging directory was made in the unsafe directory:\n%s", log)
	}
	e.assertNoGeneration()
	e.assertClean()

	// The fix the message names: the directory is root's again. The same
	// attacker, still watching, sees the staging directory and cannot move
	// it; the apply succeeds and the root-only file is untouched.
	if err := os.Chown(confDir, 0, 0); err != nil {
		t.Fatal(err)
	}
	e.mustRun(0, "apply", "--yes")
	if !waitFor(10*time.Second, func() bool { return strings.Contains(attackLog(), "saw .mtlsctl-stage-") }) {
		t.Errorf("the attacker never saw the staging directory:\n%s", attackLog())
	}
	log := attackLog()
	t.Logf("attacker:\n%s", log)
	if strings.Contains(log, "swapped") {
		t.Errorf("the attacker swapped a staging directory:\n%s", log)
	}
	if got := factsOf(t, victim); !got.same(before) {
		t.Errorf("the root-only file behind the link changed: %+v, was %+v", got, before)
	}
	e.assertApplied(0, 0)
	e.assertClean()
}
