package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/consultest"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
)

// The distribute tests drive the mtlsctl binary against three real OpenSSH
// hosts (n1..n3, all Consul servers) on their own subnet, so that they can
// run while other e2e tests use other subnets.
const (
	dsSubnet  = "198.18.50.0/24"
	dsPrefix  = "ds"
	dsAdmin   = "198.18.50.1"
	dsTimeout = 60 * time.Second
)

// dsCluster is what the cluster file says about reaching the nodes.
type dsCluster struct {
	User         string
	Sudo         bool
	IdentityFile string // default: the testnet client key
	KnownHosts   string // default: the testnet known_hosts
	Bastion      string
	ConsulUser   string // consul.user and consul.group
	LogLevel     string // consul.log_level
}

// dsEnv is one test's cluster: the testnet, the cluster file, the state dir.
type dsEnv struct {
	t     *testing.T
	net   *testnet.Net
	bin   string
	dir   string
	inv   string
	state string
	home  string
}

// consulService stands in for the agent: reload (SIGHUP) is logged.
var consulService = testnet.ServiceDef{
	Command: []string{"sh", "-c", "trap 'echo reloaded' HUP; echo started; while :; do sleep 1; done"},
}

func newDS(t *testing.T, o testnet.Options, c dsCluster) *dsEnv {
	t.Helper()
	if o.Subnet == "" {
		o.Subnet, o.Prefix = dsSubnet, dsPrefix
	}
	o.Services = map[string]testnet.ServiceDef{"consul": consulService}
	n := testnet.New(t, o) // skips when the machine cannot do it
	e := &dsEnv{t: t, net: n, bin: mtlsctlBinary(t), dir: t.TempDir(), home: n.Home()}
	e.inv = filepath.Join(e.dir, "cluster.yaml")
	e.state = filepath.Join(e.dir, "state")
	e.writeCluster(c)
	if r := e.run("generate"); r.code != 0 {
		t.Fatalf("generate: exit %d\n%s", r.code, r)
	}
	return e
}

func (e *dsEnv) writeCluster(c dsCluster) {
	e.t.Helper()
	if c.User == "" {
		c.User = "root"
	}
	if c.IdentityFile == "" {
		c.IdentityFile = e.net.ClientKeyFile()
	}
	if c.KnownHosts == "" {
		c.KnownHosts = e.net.KnownHostsFile()
	}
	var b strings.Builder
	b.WriteString("cluster: ds\nconsul:\n  version: \"1.6.2\"\n  reload_command: systemctl reload-or-restart consul\n")
	if c.ConsulUser != "" {
		fmt.Fprintf(&b, "  user: %s\n  group: %s\n", c.ConsulUser, c.ConsulUser)
	}
	if c.LogLevel != "" {
		fmt.Fprintf(&b, "  log_level: %s\n", c.LogLevel)
	}
	// These tests are about moving files; the mesh has its own (mesh_test.go).
	b.WriteString("mesh:\n  enabled: false\n")
	fmt.Fprintf(&b, "ssh:\n  user: %s\n  identity_file: %s\n  known_hosts: %s\n", c.User, c.IdentityFile, c.KnownHosts)
	if c.Sudo {
		b.WriteString("  sudo: true\n")
	}
	if c.Bastion != "" {
		fmt.Fprintf(&b, "  bastion: %s\n", c.Bastion)
	}
	b.WriteString("datacenters:\n  - name: dc-1\n    nodes:\n")
	comps := [][]string{{"zookeeper", "cassandra", "management-server", "openldap", "ui"},
		{"zookeeper", "cassandra", "router", "message-processor"}, {"zookeeper", "postgres", "qpid"}}
	for i, nd := range e.net.Nodes() {
		fmt.Fprintf(&b, "      - name: %s\n        address: %s\n        components: [%s]\n", nd.Name, nd.Addr, strings.Join(comps[i%len(comps)], ", "))
	}
	if err := os.WriteFile(e.inv, []byte(b.String()), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// result is one mtlsctl run.
type result struct {
	args           []string
	stdout, stderr string
	code           int
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("$ mtlsctl %s (exit %d, %s)\n--- stdout\n%s--- stderr\n%s", strings.Join(r.args, " "), r.code,
		r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

func (r result) out() string { return r.stdout + r.stderr }

// command is mtlsctl args as a user would run it, with HOME the testnet's
// home (never the real ~/.ssh) and no ssh-agent.
func (e *dsEnv) command(ctx context.Context, state string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, e.bin, withSkipLive(args)...)
	cmd.Dir = e.dir
	cmd.Env = []string{"HOME=" + e.home, "PATH=" + os.Getenv("PATH"), "USER=e2e", "MTLSCTL_INVENTORY=" + e.inv, "MTLSCTL_STATE=" + state}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// withSkipLive adds --skip-live to plan, apply and status: the nodes run a
// stand-in for the Consul agent, without its HTTP API, so there is no live
// cluster to wait for (e2e/cluster_test.go tests that part with real agents).
func withSkipLive(args []string) []string {
	out := make([]string, 0, len(args)+1)
	for i, a := range args {
		out = append(out, a)
		if a == "plan" || a == "apply" || a == "status" {
			return append(append(out, "--skip-live"), args[i+1:]...)
		}
	}
	return out
}

func (e *dsEnv) run(args ...string) result { return e.runState(e.state, args...) }

func (e *dsEnv) runState(state string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dsTimeout)
	defer cancel()
	cmd, stdout, stderr := e.command(ctx, state, args...)
	start := time.Now()
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("mtlsctl %s: %v", strings.Join(args, " "), err)
	}
	e.t.Logf("mtlsctl %s: exit %d in %s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond))
	return r
}

// mustRun runs mtlsctl and fails the test unless it exits with code.
func (e *dsEnv) mustRun(code int, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != code {
		e.t.Fatalf("want exit %d\n%s", code, r)
	}
	return r
}

// generation is the generation a node has committed ("" for none).
func generation(nd *testnet.Node) string {
	b, err := os.ReadFile(nd.Path("/var/lib/mtlsctl/generation"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// leftovers lists what an apply must not leave on a node once it is over:
// staging, upload and validation directories and the node lock. It asks the
// node itself, so mounts made inside the node are seen.
func leftovers(t *testing.T, nd *testnet.Node) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := nd.Exec(ctx, "sh", "-c", `find /etc/consul.d /var/lib/mtlsctl /root /home -name '.mtlsctl-*' 2>/dev/null; [ -d /var/lib/mtlsctl/lock ] && echo /var/lib/mtlsctl/lock; exit 0`)
	if err != nil {
		t.Fatalf("%s: %v", nd.Name, err)
	}
	return strings.Fields(string(out))
}

func (e *dsEnv) assertClean() {
	e.t.Helper()
	for _, nd := range e.net.Nodes() {
		if left := leftovers(e.t, nd); len(left) > 0 {
			e.t.Errorf("%s: left behind %v", nd.Name, left)
		}
	}
	if _, err := os.Stat(filepath.Join(e.state, "apply", "apply-journal.json")); err == nil {
		e.t.Errorf("the apply journal is still in %s", filepath.Join(e.state, "apply"))
	}
}

// assertNoGeneration checks that no node has committed anything.
func (e *dsEnv) assertNoGeneration() {
	e.t.Helper()
	for _, nd := range e.net.Nodes() {
		if g := generation(nd); g != "" {
			e.t.Errorf("%s: committed generation %s", nd.Name, g)
		}
		if _, err := os.Stat(nd.Path("/etc/consul.d/mtlsctl-agent.json")); err == nil {
			e.t.Errorf("%s: agent config written", nd.Name)
		}
	}
}

// rendered is every node's bundle as `mtlsctl render` writes it:
// node -> node path -> (content, mode).
type renderedFile struct {
	content []byte
	mode    fs.FileMode
}

func (e *dsEnv) render() map[string]map[string]renderedFile {
	e.t.Helper()
	out := filepath.Join(e.t.TempDir(), "render")
	e.mustRun(0, "render", "--out", out)
	files := map[string]map[string]renderedFile{}
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		node, nodePath, _ := strings.Cut(rel, string(filepath.Separator))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if files[node] == nil {
			files[node] = map[string]renderedFile{}
		}
		files[node]["/"+filepath.ToSlash(nodePath)] = renderedFile{b, fi.Mode().Perm()}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return files
}

// assertApplied checks every node holds exactly its rendered files, with
// the rendered modes and the wanted owner, and a generation.
func (e *dsEnv) assertApplied(uid, gid int) {
	e.assertAppliedKeys(uid, gid, 0)
}

// assertAppliedKeys is assertApplied with the mode private keys must have
// on the nodes (0: as rendered; consul.group makes them 0640 on the nodes
// while render keeps its local copies 0600).
func (e *dsEnv) assertAppliedKeys(uid, gid int, keyMode fs.FileMode) {
	e.t.Helper()
	want := e.render()
	for _, nd := range e.net.Nodes() {
		if len(want[nd.Name]) == 0 {
			e.t.Fatalf("render wrote nothing for %s", nd.Name)
		}
		for p, rf := range want[nd.Name] {
			got, err := os.ReadFile(nd.Path(p))
			if err != nil {
				e.t.Errorf("%s: %v", nd.Name, err)
				continue
			}
			if !bytes.Equal(got, rf.content) {
				e.t.Errorf("%s:%s: content differs from render", nd.Name, p)
			}
			fi, _ := os.Stat(nd.Path(p))
			wantMode := rf.mode
			if keyMode != 0 && strings.HasSuffix(p, "-key.pem") {
				wantMode = keyMode
			}
			if fi.Mode().Perm() != wantMode {
				e.t.Errorf("%s:%s: mode %04o, want %04o", nd.Name, p, fi.Mode().Perm(), wantMode)
			}
			st := fi.Sys().(*syscall.Stat_t)
			wantUID, wantGID := uid, gid
			if !strings.HasPrefix(p, "/etc/consul.d/") {
				wantUID, wantGID = 0, 0 // node state files stay root's
			}
			if int(st.Uid) != wantUID || int(st.Gid) != wantGID {
				e.t.Errorf("%s:%s: owner %d:%d, want %d:%d", nd.Name, p, st.Uid, st.Gid, wantUID, wantGID)
			}
		}
		if generation(nd) == "" {
			e.t.Errorf("%s: no generation recorded", nd.Name)
		}
	}
}

// planGenerations runs `plan -o json` and returns node -> planned generation.
func (e *dsEnv) planGenerations() map[string]string {
	e.t.Helper()
	r := e.run("-o", "json", "plan")
	var p struct {
		Nodes []struct {
			Node       string `json:"node"`
			Generation string `json:"target_generation"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		e.t.Fatalf("plan -o json: %v\n%s", err, r)
	}
	out := map[string]string{}
	for _, n := range p.Nodes {
		out[n.Node] = n.Generation
	}
	return out
}

// assertConverged checks every node is on its planned generation, with
// nothing pending and nothing left over.
func (e *dsEnv) assertConverged() {
	e.t.Helper()
	gens := e.planGenerations()
	for _, nd := range e.net.Nodes() {
		if g := generation(nd); g == "" || g != gens[nd.Name] {
			e.t.Errorf("%s: generation %q, want %q", nd.Name, g, gens[nd.Name])
		}
	}
	e.mustRun(0, "plan", "--detailed-exitcode")
	e.assertClean()
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return cond()
}

// slowConsul puts a `consul` on the node's PATH whose validate marks that it
// started (the node's staging is under way: files uploaded and verified, no
// commit yet) and then takes d, which gives a test a wide window to act in.
func slowConsul(t *testing.T, nd *testnet.Node, d time.Duration) (started string) {
	t.Helper()
	started = nd.Path(testnet.BinDir + "/validating")
	script := fmt.Sprintf("#!/bin/sh\n: > %s/validating\nsleep %.1f\necho 'Configuration is valid!'\n", testnet.BinDir, d.Seconds())
	if err := os.WriteFile(nd.Path(testnet.BinDir+"/consul"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return started
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// (a) generate → plan → apply → status → nothing left to do.
func TestDistributeApplyLifecycle(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})

	r := e.mustRun(0, "plan")
	for _, nd := range e.net.Nodes() {
		if !strings.Contains(r.stdout, fmt.Sprintf("node %s (%s): generation none -> ", nd.Name, nd.SSHAddr())) {
			t.Errorf("plan does not show %s as new:\n%s", nd.Name, r)
		}
	}
	if n := strings.Count(r.stdout, "\n  + "); n != 21 {
		t.Errorf("plan shows %d creates, want 21 (7 files on 3 nodes):\n%s", n, r)
	}
	if strings.Contains(r.stdout, "  ~ ") {
		t.Errorf("plan on empty nodes shows changes:\n%s", r)
	}
	e.mustRun(2, "plan", "--detailed-exitcode")
	e.assertNoGeneration()

	r = e.mustRun(0, "apply", "--yes")
	if !strings.Contains(r.stdout, "3 done") {
		t.Errorf("apply output:\n%s", r)
	}
	e.assertApplied(0, 0)
	e.assertClean()
	for _, nd := range e.net.Nodes() {
		if _, err := nd.ServicePID("consul"); err != nil {
			t.Errorf("%s: the reload command did not run (consul not started): %v", nd.Name, err)
		}
	}

	r = e.mustRun(0, "status")
	for _, nd := range e.net.Nodes() {
		if !strings.Contains(r.stdout, nd.Name) {
			t.Errorf("status does not list %s:\n%s", nd.Name, r)
		}
	}
	r = e.mustRun(0, "-o", "json", "status")
	if !json.Valid([]byte(r.stdout)) || strings.Contains(r.stdout, "BEGIN") {
		t.Errorf("status -o json:\n%s", r)
	}
	e.mustRun(0, "plan", "--detailed-exitcode")

	before := map[string]time.Time{}
	for _, nd := range e.net.Nodes() {
		fi, _ := os.Stat(nd.Path("/etc/consul.d/tls/agent.pem"))
		before[nd.Name] = fi.ModTime()
	}
	r = e.mustRun(0, "apply", "--yes")
	if !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("second apply does not say nothing to do:\n%s", r)
	}
	for _, nd := range e.net.Nodes() {
		fi, _ := os.Stat(nd.Path("/etc/consul.d/tls/agent.pem"))
		if !fi.ModTime().Equal(before[nd.Name]) {
			t.Errorf("%s: the second apply touched agent.pem", nd.Name)
		}
		if log, _ := os.ReadFile(nd.ServiceLogFile("consul")); strings.Count(string(log), "started") != 1 || strings.Contains(string(log), "reloaded") {
			t.Errorf("%s: the second apply restarted or reloaded consul:\n%s", nd.Name, log)
		}
	}
	e.assertClean()

	// Drift: a file changed on a node makes status fail, naming it.
	n2 := e.net.Node("n2")
	if err := os.WriteFile(n2.Path("/etc/consul.d/mtlsctl-services.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.run("status")
	if r.code == 0 || !strings.Contains(r.out(), "mtlsctl-services.json") {
		t.Errorf("status after drift on n2:\n%s", r)
	}
}

// (b) An unreachable node at plan time.
func TestDistributeUnreachableAtPlan(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})
	n2 := e.net.Node("n2")
	if err := n2.StopSSHD(); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(1, "plan")
	t.Logf("%s", r)
	if !strings.Contains(r.stdout, "node n2 ("+n2.SSHAddr()+"): ERROR") {
		t.Errorf("plan does not name n2 as failing:\n%s", r)
	}
	for _, name := range []string{"n1", "n3"} {
		if !strings.Contains(r.stdout, "node "+name+" ("+e.net.Node(name).SSHAddr()+"): generation none -> ") {
			t.Errorf("plan did not plan %s:\n%s", name, r)
		}
	}
	r = e.mustRun(1, "apply", "--yes")
	if !strings.Contains(r.out(), "n2") {
		t.Errorf("apply does not name n2:\n%s", r)
	}
	if strings.Contains(r.out(), "nothing to do") {
		t.Errorf("apply says nothing to do although it could not reach n2:\n%s", r)
	}
	e.assertNoGeneration()
	e.assertClean()
}

// (c) sshd killed on one node during staging: no node commits; after the
// node is back, a re-run converges.
func TestDistributeSSHDKilledDuringStaging(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})
	n3 := e.net.Node("n3")
	started := slowConsul(t, n3, 3*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), dsTimeout)
	defer cancel()
	cmd, stdout, stderr := e.command(ctx, e.state, "apply", "--yes")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	staging := func() bool {
		m, _ := filepath.Glob(n3.Path("/etc/consul.d/.mtlsctl-stage-*"))
		return len(m) > 0
	}
	if !waitFor(20*time.Second, staging) {
		t.Fatal("n3's staging never started")
	}
	if !waitFor(20*time.Second, func() bool { return exists(started) }) {
		t.Fatal("n3 never reached validation")
	}
	if err := n3.StopSSHD(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	r := result{args: []string{"apply", "--yes"}, stdout: stdout.String(), stderr: stderr.String()}
	if err == nil {
		t.Fatalf("apply succeeded although n3's sshd died during staging\n%s", r)
	}
	if !strings.Contains(r.out(), "n3") {
		t.Errorf("apply does not name n3:\n%s", r)
	}
	committed := 0
	for _, nd := range e.net.Nodes() {
		if generation(nd) != "" {
			committed++
		}
	}
	if committed != 0 {
		t.Fatalf("%d node(s) committed after a staging failure\n%s", committed, r)
	}
	for _, name := range []string{"n1", "n2"} {
		if left := leftovers(t, e.net.Node(name)); len(left) > 0 {
			t.Errorf("%s: staging not rolled back: %v", name, left)
		}
	}

	// n3 comes back: the next apply first removes its old staging, then converges.
	if err := n3.StartSSHD(); err != nil {
		t.Fatal(err)
	}
	os.Remove(n3.Path(testnet.BinDir + "/consul"))
	r = e.mustRun(0, "apply", "--yes")
	if !strings.Contains(r.stdout, "recovered an interrupted apply") {
		t.Errorf("the re-run does not report the cleanup of the failed apply:\n%s", r)
	}
	e.assertConverged()
}

// (d) The admin process SIGKILLed during commit: a re-run converges.
func TestDistributeAdminKilledDuringCommit(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})
	ctx, cancel := context.WithTimeout(context.Background(), dsTimeout)
	defer cancel()
	// One node at a time, so the commit phase spans several nodes.
	cmd, stdout, stderr := e.command(ctx, e.state, "apply", "--yes", "--concurrency", "1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nodes := e.net.Nodes()
	first := func() bool {
		for _, nd := range nodes {
			if exists(nd.Path("/var/lib/mtlsctl/generation")) {
				return true
			}
		}
		return false
	}
	if !waitFor(30*time.Second, first) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no node ever committed\n%s%s", stdout, stderr)
	}
	cmd.Process.Kill() // SIGKILL, by PID
	cmd.Wait()
	committed := 0
	for _, nd := range nodes {
		if generation(nd) != "" {
			committed++
		}
	}
	journal, jerr := os.ReadFile(filepath.Join(e.state, "apply", "apply-journal.json"))
	var j struct{ Phase string }
	json.Unmarshal(journal, &j)
	t.Logf("killed with %d of %d node(s) committed; journal phase %q (present: %v)", committed, len(nodes), j.Phase, jerr == nil)
	if jerr != nil && committed < len(nodes) {
		t.Fatalf("the journal is gone although only %d node(s) committed", committed)
	}

	r := e.run("apply", "--yes")
	if r.code != 0 && strings.Contains(r.stderr, "--force-unlock") {
		// The state dir's lock still names the killed process: mtlsctl asks
		// a human to confirm it is dead before taking it over.
		t.Logf("the re-run asks to confirm the killed run is dead:\n%s", r.stderr)
		r = e.run("apply", "--yes", "--force-unlock")
	}
	if r.code != 0 {
		t.Fatalf("the re-run did not converge:\n%s", r)
	}
	if jerr == nil && !strings.Contains(r.stdout, "recovered an interrupted apply") {
		t.Errorf("the re-run does not report finishing the interrupted apply:\n%s", r)
	}
	e.assertConverged()
	e.assertApplied(0, 0)
}

// (e) A full disk on one node during staging: nothing commits anywhere.
func TestDistributeDiskFullDuringStaging(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})
	n2 := e.net.Node("n2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := os.MkdirAll(n2.Path("/etc/consul.d/tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	// mode=0755: a tmpfs root is 1777 by default, and staging refuses a
	// target directory other users can write in.
	if out, err := n2.Exec(ctx, "sh", "-c", "mount -t tmpfs -o size=16k,mode=0755 tmpfs /etc/consul.d/tls && "+
		"{ dd if=/dev/zero of=/etc/consul.d/tls/fill bs=1k count=64 2>/dev/null; df -k /etc/consul.d/tls; }"); err != nil {
		t.Skipf("cannot mount a small tmpfs in the node: %v %s", err, out)
	}
	r := e.mustRun(1, "apply", "--yes")
	t.Logf("%s", r)
	if !regexp.MustCompile(`node n2: stage: .*no space left on the node: /etc/consul\.d/tls has \d+ KiB free`).MatchString(r.out()) {
		t.Errorf("apply does not report n2's staging failure:\n%s", r)
	}
	if !strings.Contains(r.out(), "no node was changed") {
		t.Errorf("apply does not say nothing changed:\n%s", r)
	}
	e.assertNoGeneration()
	e.assertClean()
}

// rewriteKnownHost replaces the known_hosts entry of nd with a new key and
// returns the line number it is on.
func rewriteKnownHost(t *testing.T, file string, nd *testnet.Node) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewPublicKey(pub)
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) >= 2 && (f[0] == nd.Addr || strings.HasPrefix(f[0], "["+nd.Addr+"]")) {
			lines[i] = f[0] + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			return i + 1
		}
	}
	t.Fatalf("%s has no line for %s", file, nd.Addr)
	return 0
}

// (f) A changed host key is refused, naming the node and known_hosts
// file:line, by plan and apply, even with --accept-new-host-keys.
func TestDistributeChangedHostKey(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})
	n2 := e.net.Node("n2")
	kh := e.net.KnownHostsFile()
	line := rewriteKnownHost(t, kh, n2)
	where := fmt.Sprintf("%s:%d", kh, line)
	for _, args := range [][]string{{"plan"}, {"apply", "--yes"}, {"plan", "--accept-new-host-keys"}, {"apply", "--yes", "--accept-new-host-keys"}} {
		r := e.mustRun(1, args...)
		if args[0] == "plan" && len(args) == 1 {
			t.Logf("%s", r)
		}
		if !strings.Contains(r.out(), "host key mismatch: n2") || !strings.Contains(r.out(), where) {
			t.Errorf("%v: no clear refusal naming n2 and %s:\n%s", args, where, r)
		}
	}
	e.assertNoGeneration()
	e.assertClean()
}

// (g) A key the nodes do not accept: a clear authentication error per node.
func TestDistributeWrongKey(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})
	// A home of its own, so that no default key can be found by accident.
	e.home = t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(e.home, "other_key")
	if err := os.WriteFile(other, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	e.writeCluster(dsCluster{IdentityFile: other})
	for _, args := range [][]string{{"plan"}, {"apply", "--yes"}} {
		r := e.mustRun(1, args...)
		t.Logf("%s", r)
		if strings.Contains(r.out(), "nothing to do") {
			t.Errorf("%v says nothing to do although no node could be reached:\n%s", args, r)
		}
		for _, nd := range e.net.Nodes() {
			if !regexp.MustCompile(`node ` + nd.Name + `[ :(].*ssh authentication failed`).MatchString(r.out()) {
				t.Errorf("%v: no authentication error for %s:\n%s", args, nd.Name, r)
			}
		}
	}
	// Permission denied for a user the node has no key for.
	e.writeCluster(dsCluster{User: "nobody"})
	e.home = e.net.Home()
	r := e.mustRun(1, "plan")
	if !strings.Contains(r.out(), "nobody@") || !strings.Contains(r.out(), "ssh authentication failed") {
		t.Errorf("no authentication error for user nobody:\n%s", r)
	}
	e.assertNoGeneration()
}

// (h) A non-root login user with sudo: files installed owned by consul.user
// (or root) with the rendered modes.
func TestDistributeSudoUser(t *testing.T) {
	owner := ""
	uid, gid := 0, 0
	for _, name := range []string{"consul", "daemon"} {
		if u, err := user.Lookup(name); err == nil {
			if _, err := user.LookupGroup(name); err == nil {
				owner = name
				fmt.Sscan(u.Uid, &uid)
				fmt.Sscan(u.Gid, &gid)
				g, _ := user.LookupGroup(name)
				fmt.Sscan(g.Gid, &gid)
				break
			}
		}
	}
	if owner == "" {
		t.Log("no consul or daemon user and group here: checking root ownership only")
	}
	e := newDS(t, testnet.Options{SudoUser: true}, dsCluster{User: testnet.SudoUserName, Sudo: true, ConsulUser: owner})
	r := e.mustRun(0, "apply", "--yes")
	if !strings.Contains(r.stdout, "3 done") {
		t.Errorf("apply output:\n%s", r)
	}
	keyMode := fs.FileMode(0)
	if owner != "" {
		keyMode = 0o640 // the agent reads its key through the group
	}
	e.assertAppliedKeys(uid, gid, keyMode)
	e.assertClean()
	e.mustRun(0, "status")
	e.mustRun(0, "plan", "--detailed-exitcode")
	for _, nd := range e.net.Nodes() {
		log, _ := os.ReadFile(filepath.Join(nd.Root, "logs", "sshd.log"))
		if !strings.Contains(string(log), "Accepted publickey for "+testnet.SudoUserName) || strings.Contains(string(log), "Accepted publickey for root") {
			t.Errorf("%s: the apply did not log in as %s only", nd.Name, testnet.SudoUserName)
		}
	}
}

// (i) --accept-new-host-keys records unknown hosts in the cluster's
// known_hosts file; without it an unknown host is refused.
func TestDistributeAcceptNewHostKeys(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})
	kh := e.net.KnownHostsFile()
	if err := os.WriteFile(kh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(1, "plan")
	for _, nd := range e.net.Nodes() {
		if !strings.Contains(r.out(), "unknown host: "+nd.Name) {
			t.Errorf("plan does not refuse unknown %s:\n%s", nd.Name, r)
		}
	}
	if b, _ := os.ReadFile(kh); len(b) != 0 {
		t.Fatalf("plan without the flag wrote known_hosts:\n%s", b)
	}
	e.mustRun(0, "plan", "--accept-new-host-keys")
	b, _ := os.ReadFile(kh)
	for _, nd := range e.net.Nodes() {
		want := nd.Addr + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(nd.HostKey)))
		if !strings.Contains(string(b), want) {
			t.Errorf("known_hosts lacks %s's key:\n%s", nd.Name, b)
		}
	}
	e.mustRun(0, "apply", "--yes")
	e.assertConverged()

	// A recorded key that then changes is refused, flag or not.
	rewriteKnownHost(t, kh, e.net.Node("n3"))
	r = e.mustRun(1, "plan", "--accept-new-host-keys")
	if !strings.Contains(r.out(), "host key mismatch: n3") {
		t.Errorf("changed key not refused:\n%s", r)
	}
}

// (j) Two admins at once (two state dirs with the same credentials): the
// node lock lets at most one apply; a loser names the lock holder.
func TestDistributeTwoAdmins(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})
	state2 := filepath.Join(e.dir, "state2")
	if out, err := exec.Command("cp", "-a", e.state, state2).CombinedOutput(); err != nil {
		t.Fatalf("copy the state dir: %v %s", err, out)
	}
	// Validation takes a second on every node, so both runs are surely
	// staging at the same time.
	for _, nd := range e.net.Nodes() {
		slowConsul(t, nd, time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dsTimeout)
	defer cancel()
	type run struct {
		cmd            *exec.Cmd
		stdout, stderr *bytes.Buffer
		err            error
	}
	runs := make([]*run, 2)
	for i, st := range []string{e.state, state2} {
		cmd, so, se := e.command(ctx, st, "apply", "--yes")
		runs[i] = &run{cmd: cmd, stdout: so, stderr: se}
	}
	for _, r := range runs {
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	won := 0
	for i, r := range runs {
		r.err = r.cmd.Wait()
		out := r.stdout.String() + r.stderr.String()
		if r.err == nil {
			won++
			continue
		}
		// The holder is the other run: user, admin host and PID.
		other := runs[1-i].cmd.Process.Pid
		if !strings.Contains(out, "locked by another apply") || !strings.Contains(out, fmt.Sprintf("pid %d", other)) && !strings.Contains(out, fmt.Sprint(other)) {
			t.Errorf("admin %d failed without naming the lock holder (pid %d):\n%s", i+1, other, out)
		}
		t.Logf("admin %d lost:\n%s", i+1, out)
	}
	// Both start with the first node's lock, so exactly one wins.
	if won != 1 {
		t.Fatalf("%d admins applied, want exactly 1", won)
	}
	for _, nd := range e.net.Nodes() {
		os.Remove(nd.Path(testnet.BinDir + "/consul"))
	}
	e.assertConverged()
	e.runState(state2, "apply", "--yes") // the loser's re-run: nothing to do
	e.assertClean()
}

// (k) A bastion: node 1 is the jump host for the others, and direct access
// from the admin to node 2 is blocked.
func TestDistributeBastion(t *testing.T) {
	e := newDS(t, testnet.Options{}, dsCluster{})
	n1, n2 := e.net.Node("n1"), e.net.Node("n2")
	e.writeCluster(dsCluster{Bastion: "root@" + n1.Addr})
	blocked := false
	if _, err := exec.LookPath("iptables"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := n2.Exec(ctx, "iptables", "-A", "INPUT", "-s", dsAdmin, "-p", "tcp", "--dport", "22", "-j", "DROP")
		cancel()
		if err != nil {
			t.Logf("iptables in the node failed, not blocking direct access: %v %s", err, out)
		} else {
			blocked = true
		}
	} else {
		t.Log("no iptables: direct access to n2 is not blocked; the sshd log still shows where logins came from")
	}
	if blocked {
		// Without the bastion n2 is now unreachable: the block works.
		e.writeCluster(dsCluster{})
		r := e.run("plan", "--timeout", "1s", "--nodes", "n2")
		if r.code == 0 {
			t.Fatalf("n2 reachable directly although blocked:\n%s", r)
		}
		e.writeCluster(dsCluster{Bastion: "root@" + n1.Addr})
	}
	logSize := map[string]int{}
	for _, nd := range e.net.Nodes() {
		b, _ := os.ReadFile(filepath.Join(nd.Root, "logs", "sshd.log"))
		logSize[nd.Name] = len(b)
	}
	e.mustRun(2, "plan", "--detailed-exitcode")
	e.mustRun(0, "apply", "--yes")
	e.assertApplied(0, 0)
	e.mustRun(0, "status")
	e.assertClean()
	for _, nd := range e.net.Nodes()[1:] {
		b, _ := os.ReadFile(filepath.Join(nd.Root, "logs", "sshd.log"))
		log := string(b[logSize[nd.Name]:])
		if !strings.Contains(log, "Accepted publickey for root from "+n1.Addr+" ") {
			t.Errorf("%s: no login through the bastion in its sshd log:\n%s", nd.Name, log)
		}
		if strings.Contains(log, "from "+dsAdmin+" ") {
			t.Errorf("%s: the admin connected directly:\n%s", nd.Name, log)
		}
	}
}

// consul validate with the real consul binary on a node: a config the agent
// would reject stops the apply before any commit.
func TestDistributeConsulValidate(t *testing.T) {
	bin := consultest.Binary(t, "1.6.2")
	e := newDS(t, testnet.Options{}, dsCluster{})
	n2 := e.net.Node("n2")
	if out, err := exec.Command("cp", bin, n2.Path(testnet.BinDir+"/consul")).CombinedOutput(); err != nil {
		t.Fatalf("copy consul into n2: %v %s", err, out)
	}
	if err := os.WriteFile(n2.Path("/etc/consul.d/bad.json"), []byte(`{"ports": {"http": "not a port"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(1, "apply", "--yes")
	t.Logf("%s", r)
	if !strings.Contains(r.out(), "n2") || !strings.Contains(r.out(), "consul validate") || !strings.Contains(r.out(), "/etc/consul.d/bad.json:") {
		t.Errorf("apply does not report consul validate's rejection on n2:\n%s", r)
	}
	e.assertNoGeneration()
	e.assertClean()

	// Without the bad file the rendered config passes the real consul's check.
	os.Remove(n2.Path("/etc/consul.d/bad.json"))
	e.mustRun(0, "apply", "--yes")
	e.assertConverged()
}

// One login per node: every step of a command runs in one remote shell, so
// a slow root .bashrc (admin-built hosts often run `pyenv init` there)
// costs each node one login per command, not one per step. The same change
// is applied to 5 nodes without and with a .bashrc that sleeps 0.2 s; the
// .bashrc records each run, and must have run exactly once per node.
func TestDistributeOneLoginPerNode(t *testing.T) {
	e := newDS(t, testnet.Options{Nodes: 5}, dsCluster{})
	e.mustRun(0, "apply", "--yes") // first apply: creates the files, starts the agents
	timed := func(level string) time.Duration {
		e.writeCluster(dsCluster{LogLevel: level})
		r := e.mustRun(0, "apply", "--yes")
		if !strings.Contains(r.stdout, "5 done") {
			t.Fatalf("apply (log_level %s) did not change every node:\n%s", level, r)
		}
		return r.took
	}
	plain := timed("DEBUG")
	const rc = "echo login >> /root/.bashrc-runs\nsleep 0.2\n"
	for _, nd := range e.net.Nodes() {
		if err := os.WriteFile(nd.Path("/root/.bashrc"), []byte(rc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slow := timed("WARN")
	for _, nd := range e.net.Nodes() {
		runs, err := os.ReadFile(nd.Path("/root/.bashrc-runs"))
		if err != nil {
			t.Fatalf("%s: the login shell never read /root/.bashrc, so this test proves nothing: %v", nd.Name, err)
		}
		if n := strings.Count(string(runs), "login"); n != 1 {
			t.Errorf("%s: %d logins for one apply, want 1 (one remote shell per node and command)", nd.Name, n)
		}
	}
	// Timings are reported, not asserted (these machines are noisy); one
	// login per node bounds the growth to one 0.2 s sleep, the nodes in
	// parallel.
	t.Logf("5-node apply: %s without dotfiles, %s with a .bashrc that sleeps 0.2 s (%+.2f s)",
		plain.Round(time.Millisecond), slow.Round(time.Millisecond), (slow - plain).Seconds())
}
