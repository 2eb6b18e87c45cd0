package testnet

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hupService traps SIGHUP by appending to /var/lib/mtlsctl/hup (private per
// node) and exits cleanly on SIGTERM.
var hupService = ServiceDef{Command: []string{"sh", "-c",
	`trap 'echo reloaded >> /var/lib/mtlsctl/hup; kill $c 2>/dev/null' HUP
trap 'kill $c 2>/dev/null; exit 0' TERM
while :; do sleep 300 & c=$!; wait $c; done`}}

// sshRun runs cmd over a fresh SSH connection and returns combined output.
func sshRun(t *testing.T, n *Net, nd *Node, user, cmd string) (string, error) {
	t.Helper()
	c, err := n.Dial(nd, user)
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

func mustSSH(t *testing.T, n *Net, nd *Node, user, cmd string) string {
	t.Helper()
	out, err := sshRun(t, n, nd, user, cmd)
	if err != nil {
		t.Fatalf("ssh %s@%s %q: %v: %s", user, nd.Name, cmd, err, out)
	}
	return strings.TrimSpace(out)
}

func exitStatus(err error) int {
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus()
	}
	return -1
}

func randomToken(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func routes(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-4", "route", "show"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	return string(out)
}

func TestNet(t *testing.T) {
	defaultBefore := ""
	if os.Geteuid() == 0 {
		defaultBefore = routes(t, "default")
	}
	probe := "tnprobe" + strconv.Itoa(os.Getpid())
	if os.Geteuid() == 0 {
		if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", probe).Run() })
	}
	began := time.Now()
	n := New(t, Options{Services: map[string]ServiceDef{"dummy": hupService}})
	t.Logf("3-node setup took %v", time.Since(began))
	nodes := n.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("got %d nodes", len(nodes))
	}

	t.Run("root routing", func(t *testing.T) {
		if got := routes(t, "default"); got != defaultBefore {
			t.Errorf("default route changed: before %q, after %q", defaultBefore, got)
		}
		got := routes(t, "dev", hostLinkName(n.Prefix()))
		want := fmt.Sprintf("%s proto kernel scope link src %s", n.Subnet(), n.AdminAddr())
		if strings.TrimSpace(got) != want {
			t.Errorf("routes via %s = %q, want only %q", hostLinkName(n.Prefix()), got, want)
		}
	})

	t.Run("ssh into each node", func(t *testing.T) {
		for _, nd := range nodes {
			out := mustSSH(t, n, nd, "root", "id -u; echo $SSH_CONNECTION; command -v systemctl")
			lines := strings.Split(out, "\n")
			if len(lines) != 3 {
				t.Fatalf("%s: unexpected output %q", nd.Name, out)
			}
			conn := strings.Fields(lines[1])
			if lines[0] != "0" || len(conn) != 4 || conn[0] != n.AdminAddr() || conn[2] != nd.Addr || conn[3] != "22" {
				t.Errorf("%s: id and SSH_CONNECTION = %q, want uid 0 from %s to %s:22", nd.Name, out, n.AdminAddr(), nd.Addr)
			}
			if lines[2] != BinDir+"/systemctl" {
				t.Errorf("%s: systemctl resolves to %q, want the stand-in in %s", nd.Name, lines[2], BinDir)
			}
		}
	})

	t.Run("home holds only per-run files", func(t *testing.T) {
		entries, err := os.ReadDir(filepath.Join(n.Home(), ".ssh"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if want := []string{"id_ed25519", "id_ed25519.pub", "known_hosts"}; !slices.Equal(names, want) {
			t.Errorf("%s/.ssh holds %v, want %v", n.Home(), names, want)
		}
		st, err := os.Stat(n.ClientKeyFile())
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("client key %s: mode %v, err %v; want 0600", n.ClientKeyFile(), st.Mode(), err)
		}
		// The file is a usable OpenSSH key whose public half root accepts.
		pem, _ := os.ReadFile(n.ClientKeyFile())
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			t.Fatalf("parse client key: %v", err)
		}
		if !bytes.Equal(signer.PublicKey().Marshal(), n.ClientSigner().PublicKey().Marshal()) {
			t.Error("ClientKeyFile and ClientSigner differ")
		}
	})

	t.Run("host key checking", func(t *testing.T) {
		n1, n2 := nodes[0], nodes[1]
		dir := t.TempDir()
		tests := []struct {
			name      string
			known     string
			wantKnown bool // a KeyError with Want set means "key changed"
		}{
			{"key of another node", knownHostsLine(n1.Addr, n2.HostKey), true},
			{"unknown host", knownHostsLine(n2.Addr, n2.HostKey), false},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				file := filepath.Join(dir, strconv.Itoa(i))
				if err := os.WriteFile(file, []byte(tc.known), 0o600); err != nil {
					t.Fatal(err)
				}
				cb, err := knownhosts.New(file)
				if err != nil {
					t.Fatal(err)
				}
				cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(n.ClientSigner())}, HostKeyCallback: cb, Timeout: 5 * time.Second}
				c, err := ssh.Dial("tcp", n1.SSHAddr(), cfg)
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded with a wrong known_hosts")
				}
				var ke *knownhosts.KeyError
				if !errors.As(err, &ke) {
					t.Fatalf("err = %v, want *knownhosts.KeyError", err)
				}
				if got := len(ke.Want) > 0; got != tc.wantKnown {
					t.Errorf("KeyError.Want = %v, want known=%v", ke.Want, tc.wantKnown)
				}
			})
		}
	})

	t.Run("wrong client key rejected", func(t *testing.T) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		other, _ := ssh.NewSignerFromKey(priv)
		cfg, err := n.ClientConfig("root")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(other)}
		c, err := ssh.Dial("tcp", nodes[0].SSHAddr(), cfg)
		if err == nil {
			c.Close()
			t.Fatal("login with a foreign key succeeded")
		}
		if !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("err = %v, want an authentication failure", err)
		}
	})

	t.Run("private mounts", func(t *testing.T) {
		n1, n2 := nodes[0], nodes[1]
		token := randomToken(t)
		mustSSH(t, n, n1, "root", "echo "+token+" > /etc/consul.d/x")
		if got, err := os.ReadFile(n1.Path("/etc/consul.d/x")); err != nil || strings.TrimSpace(string(got)) != token {
			t.Errorf("node1 file on host at %s = %q, %v", n1.Path("/etc/consul.d/x"), got, err)
		}
		if out, err := n1.Exec(t.Context(), "cat", "/etc/consul.d/x"); err != nil || strings.TrimSpace(string(out)) != token {
			t.Errorf("Exec on node1 sees %q, %v", out, err)
		}
		if out, err := sshRun(t, n, n2, "root", "cat /etc/consul.d/x"); exitStatus(err) != 1 {
			t.Errorf("node2 sees /etc/consul.d/x: %q, %v", out, err)
		}
		if _, err := n2.Exec(t.Context(), "test", "-e", "/etc/consul.d/x"); err == nil {
			t.Error("Exec on node2 sees /etc/consul.d/x")
		}
		if got, err := os.ReadFile("/etc/consul.d/x"); err == nil && strings.Contains(string(got), token) {
			t.Error("the host's /etc/consul.d/x has node1's content")
		}
		if _, err := os.Stat(BinDir + "/systemctl"); err == nil {
			t.Errorf("the stand-in is visible on the host at %s", BinDir)
		}
	})

	t.Run("nodes do not pin deleted namespaces", func(t *testing.T) {
		// probe existed when the nodes' mount namespaces were made.
		if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del: %v: %s", err, out)
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", nodes[0].mountns.PID))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(info), "/run/netns/"+probe) {
			t.Errorf("node %s still mounts %s after ip netns del", nodes[0].Name, probe)
		}
	})

	t.Run("sftp", func(t *testing.T) {
		nd := nodes[1]
		c, err := n.Dial(nd, "root")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc, err := sftp.NewClient(c)
		if err != nil {
			t.Fatalf("sftp subsystem: %v", err)
		}
		defer sc.Close()
		f, err := sc.Create("/opt/consul/via-sftp")
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(f, "sftp ok\n")
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(nd.Path("/opt/consul/via-sftp")); err != nil || string(got) != "sftp ok\n" {
			t.Errorf("file written over sftp: %q, %v", got, err)
		}
	})

	t.Run("nodes reach each other", func(t *testing.T) {
		for _, pair := range [][2]*Node{{nodes[0], nodes[1]}, {nodes[2], nodes[0]}} {
			from, to := pair[0], pair[1]
			cmd := fmt.Sprintf("echo > /dev/tcp/%s/22", to.Addr)
			if _, err := from.Exec(t.Context(), "bash", "-c", cmd); err != nil {
				t.Errorf("%s -> %s: %v", from.Name, to.SSHAddr(), err)
			}
		}
		// And the admin address is reachable from a node, but the node's own
		// loopback port 22 is not sshd (it listens on Addr only).
		if _, err := nodes[0].Exec(t.Context(), "bash", "-c", "echo > /dev/tcp/127.0.0.1/22"); err == nil {
			t.Error("sshd listens on the node's loopback too; want Addr only")
		}
	})

	t.Run("systemctl stand-in", func(t *testing.T) {
		nd := nodes[2]
		mustSSH(t, n, nd, "root", "systemctl start dummy")
		if got := mustSSH(t, n, nd, "root", "systemctl is-active dummy.service"); got != "active" {
			t.Fatalf("is-active = %q", got)
		}
		pid, err := nd.ServicePID("dummy")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(pidsInNetns(nd.NS), pid) {
			t.Fatalf("service pid %d is not running in %s", pid, nd.NS)
		}
		// start on a running unit is a no-op.
		mustSSH(t, n, nd, "root", "systemctl start dummy")
		if again, err := nd.ServicePID("dummy"); again != pid {
			t.Errorf("second start changed the pid: %d -> %d (%v)", pid, again, err)
		}
		mustSSH(t, n, nd, "root", "systemctl reload dummy")
		waitFor(t, "reload marker", func() bool {
			b, _ := os.ReadFile(nd.Path("/var/lib/mtlsctl/hup"))
			return strings.Contains(string(b), "reloaded")
		})
		if _, err := os.Stat(nodes[0].Path("/var/lib/mtlsctl/hup")); err == nil {
			t.Error("reload marker appeared on another node")
		}
		if out := mustSSH(t, n, nd, "root", "systemctl status dummy"); !strings.Contains(out, "Main PID: "+strconv.Itoa(pid)) {
			t.Errorf("status = %q, want Main PID %d", out, pid)
		}
		mustSSH(t, n, nd, "root", "systemctl stop dummy")
		if syscall.Kill(pid, 0) == nil && slices.Contains(pidsInNetns(nd.NS), pid) {
			t.Errorf("pid %d still running after stop", pid)
		}
		out, err := sshRun(t, n, nd, "root", "systemctl is-active dummy")
		if exitStatus(err) != 3 || strings.TrimSpace(out) != "inactive" {
			t.Errorf("is-active after stop = %q, %v; want inactive, exit 3", out, err)
		}
		// restart from stopped starts; SetService adds units later.
		if err := n.SetService("other", ServiceDef{Command: []string{"sleep", "300"}}); err != nil {
			t.Fatal(err)
		}
		mustSSH(t, n, nd, "root", "systemctl restart other && systemctl is-active other")
		// Left running on purpose: Close must reap it.
	})

	t.Run("exec and start", func(t *testing.T) {
		nd := nodes[0]
		out, err := nd.Exec(t.Context(), "sh", "-c", "ip -4 -o addr show dev eth0; echo $PATH")
		if err != nil || !strings.Contains(string(out), nd.Addr+"/24") || !strings.Contains(string(out), BinDir+":") {
			t.Errorf("Exec = %q, %v; want eth0 with %s and PATH starting with %s", out, err, nd.Addr, BinDir)
		}
		_, err = nd.Exec(t.Context(), "sh", "-c", "echo oops >&2; exit 7")
		var ee *ExecError
		if !errors.As(err, &ee) || ee.Stderr != "oops\n" || ee.Node != nd.Name {
			t.Errorf("failing Exec err = %#v", err)
		}
		p, err := nd.Start(t.Context(), "listener", "sh", "-c", "echo started; exec sleep 300")
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "listener output", func() bool {
			log, _ := os.ReadFile(p.LogFile)
			return string(log) == "started\n"
		})
		if !slices.Contains(pidsInNetns(nd.NS), p.PID) {
			t.Errorf("started pid %d not in %s", p.PID, nd.NS)
		}
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Errorf("Signal: %v", err)
		}
		p.Signal(syscall.SIGCONT)
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		if !p.Exited() {
			t.Error("process still running after Stop")
		}
	})

	t.Run("sshd stop and start", func(t *testing.T) {
		nd := nodes[2]
		c, err := n.Dial(nd, "root")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := nd.StopSSHD(); err != nil {
			t.Fatal(err)
		}
		if nd.SSHDRunning() {
			t.Error("SSHDRunning after StopSSHD")
		}
		if _, err := net.DialTimeout("tcp", nd.SSHAddr(), time.Second); err == nil {
			t.Error("port 22 still accepts after StopSSHD")
		}
		if s, err := c.NewSession(); err == nil {
			if err := s.Run("true"); err == nil {
				t.Error("an open connection survived StopSSHD")
			}
		}
		if err := nd.StartSSHD(); err != nil {
			t.Fatal(err)
		}
		// Same host key: known_hosts still matches.
		if got := mustSSH(t, n, nd, "root", "echo back"); got != "back" {
			t.Errorf("after restart: %q", got)
		}
	})
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func netnsNames(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func TestCloseLeavesNothing(t *testing.T) {
	n := New(t, Options{Nodes: 2, Services: map[string]ServiceDef{"dummy": hupService}})
	prefix := n.Prefix()
	var pids []int
	for _, nd := range n.Nodes() {
		pids = append(pids, nd.sshd.PID, nd.mountns.PID)
	}
	// A service started over ssh and a process started by the harness are
	// both reaped.
	mustSSH(t, n, n.Nodes()[0], "root", "systemctl start dummy")
	svcPID, err := n.Nodes()[0].ServicePID("dummy")
	if err != nil {
		t.Fatal(err)
	}
	pids = append(pids, svcPID)
	// So is a unit-file unit running as another user.
	unit := "[Service]\nUser=nobody\nExecStart=/bin/sleep 300\n"
	if err := os.WriteFile(n.Nodes()[1].UnitFile("u"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSSH(t, n, n.Nodes()[1], "root", "systemctl start u.service")
	unitPID, ok := n.Nodes()[1].UnitPID("u")
	if !ok {
		t.Fatal("unit u is not running")
	}
	pids = append(pids, unitPID)
	p, err := n.Nodes()[1].Start(t.Context(), "sleeper", "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	pids = append(pids, p.PID)

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, name := range netnsNames(t) {
		if ownsNetns(prefix, name) {
			t.Errorf("namespace %s left behind", name)
		}
	}
	if out, err := exec.Command("ip", "-o", "link").CombinedOutput(); err != nil || strings.Contains(string(out), prefix) {
		t.Errorf("ip link after Close mentions %s (err %v):\n%s", prefix, err, out)
	}
	if got := routes(t); strings.Contains(got, n.Subnet()) {
		t.Errorf("route to %s left behind:\n%s", n.Subnet(), got)
	}
	for _, pid := range pids {
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(stat), ") Z") {
			t.Errorf("pid %d still running after Close: %s", pid, stat)
		}
	}
	if _, err := n.Nodes()[0].Exec(t.Context(), "true"); !errors.Is(err, ErrNodeDown) {
		t.Errorf("Exec after Close = %v, want ErrNodeDown", err)
	}
}

func TestLeftoversRemoved(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	const prefix = "tnleft"
	ipRun := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	// A crashed run's remains, plus one namespace that only looks similar.
	ipRun("netns", "add", prefix+"-br")
	ipRun("netns", "add", prefix+"-7")
	ipRun("netns", "add", prefix+"x-1")
	t.Cleanup(func() { exec.Command("ip", "netns", "del", prefix+"x-1").Run() })
	ipRun("link", "add", prefix+"-h", "type", "veth", "peer", "name", prefix+"-hp")
	orphan := exec.Command("ip", "netns", "exec", prefix+"-7", "sleep", "300")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- orphan.Wait() }()
	t.Cleanup(func() { orphan.Process.Kill() })
	waitFor(t, "orphan in "+prefix+"-7", func() bool { return slices.Contains(pidsInNetns(prefix+"-7"), orphan.Process.Pid) })

	n := New(t, Options{Prefix: prefix, Nodes: 1})
	if got := mustSSH(t, n, n.Nodes()[0], "root", "echo ok"); got != "ok" {
		t.Fatalf("ssh = %q", got)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("process in the leftover namespace was not killed")
	}
	names := netnsNames(t)
	if slices.Contains(names, prefix+"-7") {
		t.Error("leftover namespace tnleft-7 still there")
	}
	if !slices.Contains(names, prefix+"x-1") {
		t.Error("namespace tnleftx-1 (not ours) was removed")
	}
	if _, err := net.InterfaceByName(prefix + "-hp"); err == nil {
		t.Error("leftover veth tnleft-hp still there")
	}
}

func TestSubnetInUse(t *testing.T) {
	n := New(t, Options{Nodes: 1})
	// A second Net on the same subnet must fail clearly, not break the first.
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(ft, Options{Nodes: 1, Prefix: "tnother"})
	}()
	<-done
	if !strings.Contains(ft.msg, "subnet already in use") {
		t.Errorf("second New on the same subnet: %q, want ErrSubnetInUse", ft.msg)
	}
	if got := mustSSH(t, n, n.Nodes()[0], "root", "echo ok"); got != "ok" {
		t.Errorf("first Net broken: %q", got)
	}
}

// fatalRecorder captures Fatal/Skip of a nested New without failing t.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalRecorder) record(args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fatalRecorder) Fatal(args ...any)                 { f.record(args...) }
func (f *fatalRecorder) Fatalf(format string, args ...any) { f.record(fmt.Sprintf(format, args...)) }
func (f *fatalRecorder) Skip(args ...any)                  { f.record(args...) }
func (f *fatalRecorder) Skipf(format string, args ...any)  { f.record(fmt.Sprintf(format, args...)) }
func (f *fatalRecorder) Helper()                           {}

func TestSudoUser(t *testing.T) {
	n := New(t, Options{Nodes: 2, SudoUser: true, Services: map[string]ServiceDef{"dummy": hupService}})
	dropIn := n.sudoersPath()
	if _, err := os.Stat(dropIn); err != nil {
		t.Fatalf("drop-in: %v", err)
	}
	nd := n.Nodes()[1]
	if got := mustSSH(t, n, nd, SudoUserName, "id -un; sudo -n id -u; pwd"); got != SudoUserName+"\n0\n/home/"+SudoUserName {
		t.Errorf("id/sudo/pwd = %q", got)
	}
	mustSSH(t, n, nd, SudoUserName, "sudo -n sh -c 'echo hi > /etc/consul.d/by-sudo'")
	if got, err := os.ReadFile(nd.Path("/etc/consul.d/by-sudo")); err != nil || string(got) != "hi\n" {
		t.Errorf("file written with sudo: %q, %v", got, err)
	}
	if got := mustSSH(t, n, nd, SudoUserName, "sudo -n systemctl start dummy && sudo -n systemctl is-active dummy && sudo -n sh -c 'command -v systemctl'"); got != "active\n"+BinDir+"/systemctl" {
		t.Errorf("sudo systemctl = %q, want the stand-in", got)
	}
	if _, err := os.Stat(n.Nodes()[0].Path("/etc/consul.d/by-sudo")); err == nil {
		t.Error("file written on node 2 appeared on node 1")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dropIn); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("drop-in %s still there after Close: %v", dropIn, err)
	}
}

func TestManyNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("50 nodes; skipped with -short")
	}
	began := time.Now()
	n := New(t, Options{Nodes: 50})
	t.Logf("50-node setup took %v", time.Since(began))
	began = time.Now()
	err := forEach(len(n.Nodes()), func(i int) error {
		nd := n.Nodes()[i]
		out, err := sshRun(t, n, nd, "root", "echo $SSH_CONNECTION")
		if err != nil {
			return fmt.Errorf("%s: %w: %s", nd.Name, err, out)
		}
		if f := strings.Fields(out); len(f) != 4 || f[2] != nd.Addr {
			return fmt.Errorf("%s: SSH_CONNECTION %q", nd.Name, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ssh to 50 nodes took %v", time.Since(began))
	began = time.Now()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("50-node teardown took %v", time.Since(began))
}
