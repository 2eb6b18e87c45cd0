package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
)

// The hop tests (bastions, ProxyJump chains, HostKeyAlias) use their own
// subnet so that they can run while other e2e tests use others.
const (
	hbSubnet = "198.18.100.0/24"
	hbPrefix = "hb"
	hbAdmin  = "198.18.100.1"
)

func newHB(t *testing.T) *dsEnv {
	return newDS(t, testnet.Options{Subnet: hbSubnet, Prefix: hbPrefix}, dsCluster{})
}

// runWithin runs mtlsctl and fails the test if it has not returned within
// bound (a generous bound: the point is that it returns at all).
func (e *dsEnv) runWithin(bound time.Duration, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd, stdout, stderr := e.command(ctx, e.state, args...)
	start := time.Now()
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ctx.Err() != nil {
		e.t.Fatalf("mtlsctl %s still ran after %s (killed)\n%s", strings.Join(args, " "), bound, r)
	}
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

// iptables runs iptables in a node (the rule dies with its namespace).
func iptables(t *testing.T, nd *testnet.Node, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := nd.Exec(ctx, append([]string{"iptables"}, args...)...); err != nil {
		t.Fatalf("%s: iptables %s: %v %s", nd.Name, strings.Join(args, " "), err, out)
	}
}

func needIptables(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables is needed to make a node unreachable except through a bastion")
	}
}

// sshdLogSince is what nd's sshd logged after offset bytes.
func sshdLogSince(nd *testnet.Node, offset int) string {
	b, _ := os.ReadFile(filepath.Join(nd.Root, "logs", "sshd.log"))
	if offset > len(b) {
		return ""
	}
	return string(b[offset:])
}

func sshdLogSize(nd *testnet.Node) int {
	b, _ := os.ReadFile(filepath.Join(nd.Root, "logs", "sshd.log"))
	return len(b)
}

// setNodeSSH adds a line such as "ssh_port: 2222" to nd's entry in the
// cluster file that writeCluster wrote.
func setNodeSSH(t *testing.T, e *dsEnv, nd *testnet.Node, line string) {
	t.Helper()
	inv, err := os.ReadFile(e.inv)
	if err != nil {
		t.Fatal(err)
	}
	addrLine := "address: " + nd.Addr + "\n"
	if !strings.Contains(string(inv), addrLine) {
		t.Fatalf("cluster file has no %q", addrLine)
	}
	inv = []byte(strings.Replace(string(inv), addrLine, addrLine+"        "+line+"\n", 1))
	if err := os.WriteFile(e.inv, inv, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A bastion that hangs at any hop makes `plan --timeout 3s` fail, naming
// the node and the hop, instead of hanging: (1) a TCP listener that never
// speaks; (1b) a real sshd that opens the channel to a node that never
// speaks; (2) a real sshd that logs in but never opens the channel,
// because its connection to the node is black-holed; (3) a real sshd with
// AllowTcpForwarding no, which refuses the channel.
func TestHopsHungBastion(t *testing.T) {
	needIptables(t)
	e := newHB(t)
	n1, n3 := e.net.Node("n1"), e.net.Node("n3")

	// (1) Accepts TCP on n1:2222, never sends a byte.
	ln, err := n1.Listen("tcp", n1.Addr+":2222")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	e.writeCluster(dsCluster{Bastion: "root@" + n1.Addr + ":2222"})
	r := e.runWithin(30*time.Second, "plan", "--timeout", "3s")
	t.Logf("%s", r)
	if r.code != 1 {
		t.Fatalf("want exit 1\n%s", r)
	}
	for _, nd := range e.net.Nodes() {
		want := fmt.Sprintf("node %s (%s): ERROR node %s: connect: timed out: bastion %s:2222 accepted the connection but sent no SSH banner within 3s",
			nd.Name, nd.SSHAddr(), nd.Name, n1.Addr)
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan output lacks %q\n%s", want, r)
		}
	}

	// (1b) A real sshd on n1 as the bastion opens the channel to n3:2222,
	// where a listener never speaks.
	stall, err := n3.Listen("tcp", n3.Addr+":2222")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stall.Close() })
	go func() {
		for {
			c, err := stall.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	e.writeCluster(dsCluster{Bastion: "root@" + n1.Addr})
	setNodeSSH(t, e, n3, "ssh_port: 2222")
	r = e.runWithin(30*time.Second, "plan", "--timeout", "3s", "--nodes", "n3")
	t.Logf("%s", r)
	want := fmt.Sprintf("node n3 (%s:2222): ERROR node n3: connect: timed out: %s:2222 through bastion %s accepted the connection but sent no SSH banner within 3s",
		n3.Addr, n3.Addr, n1.SSHAddr())
	if r.code != 1 || !strings.Contains(r.stdout, want) {
		t.Errorf("want exit 1 with %q\n%s", want, r)
	}

	// (2) A real sshd on n1 as the bastion; n3 drops n1's packets, so
	// sshd's connect to n3 never completes and it never answers the channel
	// open for n3. n1 and n2 are planned as usual.
	iptables(t, n3, "-A", "INPUT", "-s", n1.Addr, "-p", "tcp", "--dport", "22", "-j", "DROP")
	e.writeCluster(dsCluster{Bastion: "root@" + n1.Addr})
	r = e.runWithin(30*time.Second, "plan", "--timeout", "3s")
	t.Logf("%s", r)
	if r.code != 1 {
		t.Fatalf("want exit 1\n%s", r)
	}
	want = fmt.Sprintf("node n3 (%s): ERROR node n3: connect: timed out: bastion %s accepted the login but did not open a channel to %s within 3s: check that the bastion reaches %s",
		n3.SSHAddr(), n1.SSHAddr(), n3.SSHAddr(), n3.SSHAddr())
	if !strings.Contains(r.stdout, want) {
		t.Errorf("plan output lacks %q\n%s", want, r)
	}
	for _, name := range []string{"n1", "n2"} {
		if !strings.Contains(r.stdout, "node "+name+" ("+e.net.Node(name).SSHAddr()+"): generation none -> ") {
			t.Errorf("plan did not plan %s through the bastion:\n%s", name, r)
		}
	}

	// (3) The same bastion with forwarding off: refused at once.
	conf := filepath.Join(n1.Root, "ssh", "sshd_config")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(strings.Replace(string(b), "AllowTcpForwarding yes", "AllowTcpForwarding no", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n1.StopSSHD(); err != nil {
		t.Fatal(err)
	}
	if err := n1.StartSSHD(); err != nil {
		t.Fatal(err)
	}
	r = e.runWithin(30*time.Second, "plan", "--timeout", "3s", "--nodes", "n2")
	t.Logf("%s", r)
	want = fmt.Sprintf("node n2 (%s): ERROR node n2: connect: unreachable: bastion %s refused a channel to %s", e.net.Node("n2").SSHAddr(), n1.SSHAddr(), e.net.Node("n2").SSHAddr())
	if r.code != 1 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "AllowTcpForwarding") {
		t.Errorf("want exit 1 with %q and what to check\n%s", want, r)
	}
}

// ProxyJump "a,b" of two real sshd bastions reaches a node that accepts SSH
// only from b, with b reachable only from a; the same chain written in
// ~/.ssh/config (each host's ProxyJump naming the hop before) works too.
func TestHopsProxyJumpChain(t *testing.T) {
	needIptables(t)
	e := newHB(t)
	a, b, n3 := e.net.Node("n1"), e.net.Node("n2"), e.net.Node("n3")
	iptables(t, b, "-A", "INPUT", "-s", hbAdmin, "-p", "tcp", "--dport", "22", "-j", "DROP")
	iptables(t, n3, "-A", "INPUT", "!", "-s", b.Addr, "-p", "tcp", "--dport", "22", "-j", "DROP")
	if r := e.runWithin(30*time.Second, "plan", "--timeout", "1s", "--nodes", "n3"); r.code == 0 {
		t.Fatalf("n3 reachable directly although blocked:\n%s", r)
	}
	e.writeCluster(dsCluster{Bastion: "root@" + a.Addr + ",root@" + b.Addr})
	before := map[string]int{}
	for _, nd := range e.net.Nodes() {
		before[nd.Name] = sshdLogSize(nd)
	}
	if r := e.runWithin(60*time.Second, "plan", "--timeout", "10s", "--detailed-exitcode"); r.code != 2 {
		t.Fatalf("want exit 2 (changes pending)\n%s", r)
	}
	if r := e.runWithin(60*time.Second, "apply", "--yes", "--timeout", "10s"); r.code != 0 {
		t.Fatalf("apply through the chain: want exit 0\n%s", r)
	}
	e.assertApplied(0, 0)
	if log := sshdLogSince(n3, before["n3"]); !strings.Contains(log, "Accepted publickey for root from "+b.Addr+" ") {
		t.Errorf("n3: no login from the second bastion in its sshd log:\n%s", log)
	}
	if log := sshdLogSince(b, before["n2"]); !strings.Contains(log, "Accepted publickey for root from "+a.Addr+" ") ||
		strings.Contains(log, "from "+hbAdmin+" ") {
		t.Errorf("n2: not reached through the first bastion only:\n%s", log)
	}

	// The chain from ~/.ssh/config: n3 through n2, n2 through n1.
	e.writeCluster(dsCluster{})
	cfg := fmt.Sprintf("Host %s\n  ProxyJump root@%s\nHost %s\n  ProxyJump root@%s\n", n3.Addr, b.Addr, b.Addr, a.Addr)
	if err := os.WriteFile(filepath.Join(e.home, ".ssh", "config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(filepath.Join(e.home, ".ssh", "config")) })
	before["n3"] = sshdLogSize(n3)
	if r := e.runWithin(60*time.Second, "plan", "--timeout", "10s", "--detailed-exitcode"); r.code != 0 {
		t.Fatalf("plan through the ~/.ssh/config chain: want exit 0 (nothing to change)\n%s", r)
	}
	if log := sshdLogSince(n3, before["n3"]); !strings.Contains(log, "Accepted publickey for root from "+b.Addr+" ") {
		t.Errorf("n3: no login through the ssh config chain:\n%s", log)
	}
}

// HostKeyAlias in ~/.ssh/config: the node's key is looked up, and recorded
// by --accept-new-host-keys, under the alias, never under its address.
func TestHopsHostKeyAlias(t *testing.T) {
	e := newHB(t)
	n3 := e.net.Node("n3")
	cfg := fmt.Sprintf("Host hb-node3\n  HostName %s\n  HostKeyAlias hb-alias\n", n3.Addr)
	if err := os.WriteFile(filepath.Join(e.home, ".ssh", "config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(filepath.Join(e.home, ".ssh", "config")) })
	setNodeSSH(t, e, n3, "ssh_host: hb-node3")
	kh := e.net.KnownHostsFile()
	khBefore, _ := os.ReadFile(kh)

	// known_hosts lists n3 by address only: with the alias that is unknown.
	r := e.runWithin(30*time.Second, "plan", "--timeout", "10s")
	if r.code != 1 || !strings.Contains(r.stdout, "unknown host: n3 (hb-alias) is not in known_hosts") {
		t.Fatalf("want n3 refused as unknown under its alias\n%s", r)
	}
	if b, _ := os.ReadFile(kh); string(b) != string(khBefore) {
		t.Fatalf("plan without --accept-new-host-keys changed known_hosts:\n%s", b)
	}

	// Accepted: recorded under the alias.
	r = e.runWithin(30*time.Second, "plan", "--timeout", "10s", "--accept-new-host-keys")
	if r.code != 0 {
		t.Fatalf("want exit 0\n%s", r)
	}
	b, _ := os.ReadFile(kh)
	added := strings.TrimPrefix(string(b), string(khBefore))
	want := "hb-alias " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(n3.HostKey))) + "\n"
	if added != want {
		t.Fatalf("known_hosts gained %q, want %q", added, want)
	}

	// A wrong key under the alias is refused although the address's entry
	// holds the right one.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewSignerFromKey(priv)
	bad := string(khBefore) + "hb-alias " + string(ssh.MarshalAuthorizedKey(other.PublicKey()))
	if err := os.WriteFile(kh, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	r = e.runWithin(30*time.Second, "plan", "--timeout", "10s", "--accept-new-host-keys")
	if r.code != 1 || !strings.Contains(r.stdout, "host key mismatch: n3 (hb-alias) offered") {
		t.Fatalf("want a mismatch under the alias\n%s", r)
	}
}
