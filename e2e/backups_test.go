package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
)

// The backup and lock tests run three real OpenSSH nodes on a subnet of
// their own.
const (
	bkSubnet = "198.18.110.0/24"
	bkPrefix = "bk"
)

func newBK(t *testing.T, c dsCluster) *dsEnv {
	return newDS(t, testnet.Options{Subnet: bkSubnet, Prefix: bkPrefix}, c)
}

// setBackupsKeep writes the cluster file for c with `backups: {keep: n}`.
func (e *dsEnv) setBackupsKeep(c dsCluster, n int) {
	e.t.Helper()
	e.writeCluster(c)
	f, err := os.OpenFile(e.inv, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "backups: {keep: %d}\n", n); err != nil {
		e.t.Fatal(err)
	}
}

// backupDirs lists a node's backup generations, sorted.
func backupDirs(t *testing.T, nd *testnet.Node) []string {
	t.Helper()
	ents, err := os.ReadDir(nd.Path("/var/lib/mtlsctl/backup"))
	if err != nil {
		t.Fatalf("%s: %v", nd.Name, err)
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

// Five applies with new keys and a new agent config each (the work of a
// certificate rotation) and backups.keep 2 leave exactly the two newest
// backup generations on every node, root-only, and status counts them.
func TestBackupsKeepNewest(t *testing.T) {
	c := dsCluster{LogLevel: "INFO"}
	e := newBK(t, c)
	levels := []string{"INFO", "DEBUG", "WARN", "ERR", "TRACE"}
	gens := map[string][]string{} // node -> generation after each apply
	keys := map[string][][]byte{} // node -> agent key after each apply
	for i, lvl := range levels {
		c.LogLevel = lvl
		e.setBackupsKeep(c, 2)
		if i > 0 {
			e.mustRun(0, "generate", "--renew-before", "3650")
		}
		e.mustRun(0, "apply", "--yes")
		for _, nd := range e.net.Nodes() {
			gens[nd.Name] = append(gens[nd.Name], generation(nd))
			k, err := os.ReadFile(nd.Path("/etc/consul.d/tls/agent-key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			keys[nd.Name] = append(keys[nd.Name], k)
		}
	}
	for _, nd := range e.net.Nodes() {
		g := gens[nd.Name]
		if g[2] == g[3] || g[3] == g[4] || string(keys[nd.Name][2]) == string(keys[nd.Name][3]) {
			t.Fatalf("%s: the applies did not make new generations and keys: %v", nd.Name, g)
		}
		// Apply 5 replaced generation 4, apply 4 replaced generation 3.
		want := []string{g[2], g[3]}
		sort.Strings(want)
		if got := backupDirs(t, nd); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: backups %v, want the newest two %v", nd.Name, got, want)
		}
		for _, i := range []int{2, 3} {
			dir := nd.Path("/var/lib/mtlsctl/backup/" + g[i])
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: %s: %v, want a 0700 directory", nd.Name, dir, err)
			}
			for _, p := range []string{"/etc/consul.d/tls/agent-key.pem", "/etc/consul.d/mtlsctl-agent.json"} {
				fi, err := os.Stat(filepath.Join(dir, p))
				if err != nil {
					t.Errorf("%s: generation %d backup: %v", nd.Name, i+1, err)
					continue
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: generation %d backup of %s: mode %04o, want 0600", nd.Name, i+1, p, fi.Mode().Perm())
				}
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "/etc/consul.d/tls/agent-key.pem")); string(b) != string(keys[nd.Name][i]) {
				t.Errorf("%s: backup %s does not hold generation %d's key", nd.Name, g[i], i+1)
			}
		}
	}
	r := e.mustRun(0, "-o", "json", "status")
	var st struct {
		Nodes []struct {
			Node    string `json:"node"`
			Backups int    `json:"backup_generations"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Nodes) != 3 {
		t.Fatalf("status -o json: %v\n%s", err, r)
	}
	for _, n := range st.Nodes {
		if n.Backups != 2 {
			t.Errorf("status: %s holds %d backup generations, want 2", n.Node, n.Backups)
		}
	}
	if r := e.mustRun(0, "status"); !strings.Contains(r.stdout, "BACKUPS") {
		t.Errorf("status does not show the backup generations:\n%s", r)
	}
	e.assertClean()
}

// gatedConsul puts a `consul` on the node's PATH whose validate marks that
// it started and then waits, at most a minute, for the gate file: the run
// that staged stays in staging, holding its node locks, until the test
// opens the gate.
func gatedConsul(t *testing.T, nd *testnet.Node) (started, gate string) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\n: > %[1]s/validating\ni=0\nwhile [ ! -e %[1]s/gate ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\necho 'Configuration is valid!'\n", testnet.BinDir)
	if err := os.WriteFile(nd.Path(testnet.BinDir+"/consul"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return nd.Path(testnet.BinDir + "/validating"), nd.Path(testnet.BinDir + "/gate")
}

// --force-unlock on real nodes: refused while the holder runs on this
// machine, taken over once it has exited; a lock from another admin
// machine only with --force-unlock=RUN.
func TestForceUnlockNodeLocks(t *testing.T) {
	c := dsCluster{}
	e := newBK(t, c)
	state2 := filepath.Join(e.dir, "state2")
	if out, err := exec.Command("cp", "-a", e.state, state2).CombinedOutput(); err != nil {
		t.Fatalf("copy the state dir: %v %s", err, out)
	}
	var gates []string
	started := ""
	for _, nd := range e.net.Nodes() {
		s, g := gatedConsul(t, nd)
		gates = append(gates, g)
		if started == "" {
			started = s
		}
	}
	openGates := func() {
		for _, g := range gates {
			os.WriteFile(g, nil, 0o644)
		}
	}
	t.Cleanup(openGates)

	// Admin A applies and stays in staging, holding the node locks.
	ctx := t.Context()
	a, aOut, aErr := e.command(ctx, e.state, "apply", "--yes")
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool { return exists(started) }) {
		a.Process.Kill()
		a.Wait()
		t.Fatalf("admin A never reached validation\n%s%s", aOut, aErr)
	}
	pidA := a.Process.Pid

	// Admin B (same machine, its own state dir) may not take A's locks.
	r := e.runState(state2, "apply", "--yes", "--force-unlock")
	if r.code == 0 || !strings.Contains(r.out(), fmt.Sprintf("pid %d", pidA)) ||
		!strings.Contains(r.out(), "still running on this machine") || !strings.Contains(r.out(), "never takes a lock from a running mtlsctl") {
		t.Fatalf("B's --force-unlock while A runs:\n%s", r)
	}
	if _, err := os.Stat(e.net.Nodes()[0].Path("/var/lib/mtlsctl/lock")); err != nil {
		t.Fatalf("A's lock is gone after B's refused --force-unlock: %v", err)
	}

	// A dies (SIGKILL, by pid): its locks stay, and B is told it may take them.
	a.Process.Kill()
	a.Wait()
	openGates()
	for _, nd := range e.net.Nodes() {
		os.Remove(nd.Path(testnet.BinDir + "/consul"))
	}
	r = e.runState(state2, "apply", "--yes")
	if r.code == 0 || !strings.Contains(r.out(), fmt.Sprintf("pid %d has exited", pidA)) || !strings.Contains(r.out(), "rerun with --force-unlock") {
		t.Fatalf("B without the flag after A died:\n%s", r)
	}
	r = e.runState(state2, "apply", "--yes", "--force-unlock")
	if r.code != 0 {
		t.Fatalf("B's --force-unlock after A died:\n%s", r)
	}
	// A's own state finishes A's interrupted apply (its staging is
	// removed); its state lock still names the killed A.
	r = e.run("apply", "--yes", "--force-unlock")
	if r.code != 0 || !strings.Contains(r.stdout, "recovered an interrupted apply") {
		t.Fatalf("A's re-run:\n%s", r)
	}
	e.assertConverged()
	e.assertClean()

	// A lock left by a run of another admin machine: its processes cannot
	// be seen from here, so only --force-unlock=RUN takes it.
	c.LogLevel = "DEBUG"
	e.writeCluster(c)
	const run = "feedface00c0ffee"
	n1 := e.net.Nodes()[0]
	lock := n1.Path("/var/lib/mtlsctl/lock")
	if err := os.MkdirAll(lock, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(lock, "run"), []byte(run+"\n"), 0o600)
	os.WriteFile(filepath.Join(lock, "info"), []byte("run="+run+" holder=ops@other-admin pid=777 time="+
		time.Now().UTC().Format(time.RFC3339)+" op=apply procspace=ffffffffffffffff start=5\n"), 0o600)
	r = e.run("apply", "--yes", "--force-unlock")
	if r.code == 0 || !strings.Contains(r.out(), "ops@other-admin pid 777") || !strings.Contains(r.out(), "--force-unlock="+run) {
		t.Fatalf("--force-unlock on another machine's lock:\n%s", r)
	}
	if r := e.run("plan"); !strings.Contains(r.stdout, "locked: held by ops@other-admin pid 777") {
		t.Errorf("plan does not show the lock:\n%s", r)
	}
	e.mustRun(0, "apply", "--yes", "--force-unlock="+run)
	e.assertConverged()
	e.assertClean()
}
