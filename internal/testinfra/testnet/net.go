package testnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshdPath is Debian's sshd; sshd must be started by absolute path because
// it re-executes itself for every connection.
const sshdPath = "/usr/sbin/sshd"

// SSHPort is the port every node's sshd listens on.
const SSHPort = 22

// sudoersDir is where the drop-in for SudoUserName goes.
const sudoersDir = "/etc/sudoers.d"

// Net is a set of nodes built by New and torn down by Close (registered with
// t.Cleanup).
type Net struct {
	tb         testing.TB
	cfg        *config
	brNS       string
	dir        string
	home       string
	keyFile    string
	knownHosts string
	signer     ssh.Signer
	nodes      []*Node
	sudoers    string

	closeOnce sync.Once
	closeErr  error
}

// New builds the network described by opts and starts an sshd on every node.
// It skips the test when the machine cannot host it (not root, a tool
// missing, namespaces not permitted) and fails it on any other error; all it
// made is removed in t.Cleanup even when the test fails.
func New(tb testing.TB, opts Options) *Net {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("testnet: needs root (network namespaces, bind mounts, sshd)")
	}
	for _, tool := range []struct{ bin, pkg string }{
		{"ip", "iproute2"}, {"unshare", "util-linux"}, {"nsenter", "util-linux"}, {"setsid", "util-linux"},
	} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			tb.Skipf("testnet: %s not found on PATH; install %s", tool.bin, tool.pkg)
		}
	}
	if _, err := os.Stat(sshdPath); err != nil {
		tb.Skipf("testnet: %s not found; install openssh-server", sshdPath)
	}
	if opts.SudoUser {
		for _, bin := range []string{"sudo", "visudo", "useradd"} {
			if _, err := exec.LookPath(bin); err != nil {
				tb.Skipf("testnet: Options.SudoUser needs %s; install sudo and passwd", bin)
			}
		}
		if _, err := os.Stat(sudoersDir); err != nil {
			tb.Skipf("testnet: Options.SudoUser needs %s (sudo's drop-in directory)", sudoersDir)
		}
	}
	cfg, err := opts.normalize(tb.Name())
	if err != nil {
		tb.Fatal(err)
	}

	began := time.Now()
	n := &Net{tb: tb, cfg: cfg, brNS: cfg.prefix + "-br"}
	if err := removeNetworks(cfg.prefix); err != nil {
		tb.Fatalf("testnet: removing leftovers of prefix %q from an earlier run: %v", cfg.prefix, err)
	}
	if err := os.Remove(n.sudoersPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatalf("testnet: removing leftover %s: %v", n.sudoersPath(), err)
	}
	if err := checkSubnetFree(cfg.subnet); err != nil {
		tb.Fatal(err)
	}
	n.dir = tb.TempDir()
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("testnet: cleanup: %v", err)
		}
	})
	if err := addNetns(n.brNS); err != nil {
		if errors.Is(err, ErrNotPermitted) {
			tb.Skip(err)
		}
		tb.Fatalf("testnet: %v", err)
	}
	if err := n.setup(); err != nil {
		tb.Fatalf("testnet: %v", err)
	}
	tb.Logf("testnet: %d nodes up on %s (prefix %s) in %v", len(n.nodes), cfg.subnet, cfg.prefix, time.Since(began).Round(time.Millisecond))
	return n
}

// setup does everything after the bridge namespace exists.
func (n *Net) setup() error {
	n.home = filepath.Join(n.dir, "home")
	sshDir := filepath.Join(n.home, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	n.keyFile = filepath.Join(sshDir, "id_ed25519")
	n.knownHosts = filepath.Join(sshDir, "known_hosts")
	signer, err := writeKeyPair(n.keyFile, "testnet-client")
	if err != nil {
		return err
	}
	n.signer = signer
	authorized := ssh.MarshalAuthorizedKey(signer.PublicKey())

	if err := prepareHost(n.cfg.privateDirs); err != nil {
		return err
	}
	if n.cfg.sudoUser {
		if err := n.setupSudoUser(); err != nil {
			return err
		}
		// sshd reads authorized_keys as the user logging in; t.TempDir makes
		// its directories 0700. Secrets below stay 0600/0700 themselves.
		for _, d := range []string{filepath.Dir(n.dir), n.dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				return err
			}
		}
	}

	for i, name := range n.cfg.names {
		n.nodes = append(n.nodes, &Node{
			Name:  name,
			Addr:  n.cfg.addrs[i].String(),
			NS:    fmt.Sprintf("%s-%d", n.cfg.prefix, i+1),
			Root:  filepath.Join(n.dir, "nodes", name),
			Index: i + 1,
			net:   n,
		})
	}
	if err := forEach(len(n.nodes), func(i int) error { return n.nodes[i].prepare(authorized) }); err != nil {
		return err
	}
	var kh strings.Builder
	for _, nd := range n.nodes {
		kh.WriteString(knownHostsLine(nd.Addr, nd.HostKey))
	}
	if err := os.WriteFile(n.knownHosts, []byte(kh.String()), 0o600); err != nil {
		return err
	}

	if err := n.setupLinks(); err != nil {
		return err
	}
	if err := forEach(len(n.nodes), func(i int) error { return n.nodes[i].startMountNS() }); err != nil {
		return err
	}
	return forEach(len(n.nodes), func(i int) error { return n.nodes[i].StartSSHD() })
}

// prepareHost creates what every node's mount namespace and sshd expect on
// the shared root filesystem: empty mountpoints (left in place; a nested
// private dir needs none, its parent's per-node copy holds it) and sshd's
// privilege separation directory.
func prepareHost(privateDirs []string) error {
	for _, d := range privateDirs {
		nested := false
		for _, parent := range privateDirs {
			if parent != d && strings.HasPrefix(d, parent+"/") {
				nested = true
			}
		}
		if nested {
			continue
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create mountpoint %s on the host: %w", d, err)
		}
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("create sshd's privilege separation dir: %w", err)
	}
	return nil
}

// setupLinks builds the bridge, the veths and the addresses with one ip
// process per namespace.
func (n *Net) setupLinks() error {
	bits := n.cfg.subnet.Bits()
	hostLink := hostLinkName(n.cfg.prefix)
	root := make([]string, 0, len(n.nodes)+3)
	for _, nd := range n.nodes {
		root = append(root, "netns add "+nd.NS)
	}
	root = append(root,
		fmt.Sprintf("link add %s type veth peer name host netns %s", hostLink, n.brNS),
		fmt.Sprintf("addr add %s/%d dev %s", n.cfg.admin, bits, hostLink),
		fmt.Sprintf("link set %s up", hostLink),
	)
	if err := ipBatch("", root); err != nil {
		return err
	}
	br := []string{
		"link add br0 type bridge",
		"link set br0 up",
		"link set host master br0",
		"link set host up",
	}
	for _, nd := range n.nodes {
		v := fmt.Sprintf("v%d", nd.Index)
		br = append(br,
			fmt.Sprintf("link add %s type veth peer name eth0 netns %s", v, nd.NS),
			fmt.Sprintf("link set %s master br0", v),
			fmt.Sprintf("link set %s up", v),
		)
	}
	if err := ipBatch(n.brNS, br); err != nil {
		return err
	}
	return forEach(len(n.nodes), func(i int) error {
		nd := n.nodes[i]
		return ipBatch(nd.NS, []string{
			"link set lo up",
			fmt.Sprintf("addr add %s/%d dev eth0", nd.Addr, bits),
			"link set eth0 up",
		})
	})
}

// userMu serialises useradd/usermod between Nets of one test binary.
var userMu sync.Mutex

// setupSudoUser makes sure SudoUserName exists and can log in with a key,
// and installs the NOPASSWD drop-in.
func (n *Net) setupSudoUser() error {
	userMu.Lock()
	defer userMu.Unlock()
	if _, err := user.Lookup(SudoUserName); err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home",
			"--home-dir", "/home/"+SudoUserName, "--shell", "/bin/bash", SudoUserName).CombinedOutput()
		if err != nil {
			return fmt.Errorf("useradd %s: %w: %s", SudoUserName, err, strings.TrimSpace(string(out)))
		}
	}
	// With UsePAM no, sshd refuses an account whose password is locked
	// ("!"), which is how useradd leaves it; "*" means "no password" instead.
	if locked, err := passwordLocked(SudoUserName); err != nil {
		return err
	} else if locked {
		if out, err := exec.Command("usermod", "-p", "*", SudoUserName).CombinedOutput(); err != nil {
			return fmt.Errorf("usermod -p '*' %s: %w: %s", SudoUserName, err, strings.TrimSpace(string(out)))
		}
	}

	content := fmt.Sprintf(`# Written by internal/testinfra/testnet (prefix %s); removed when the test ends.
Defaults:%[2]s secure_path="%[3]s"
Defaults:%[2]s !requiretty
%[2]s ALL=(ALL:ALL) NOPASSWD: ALL
`, n.cfg.prefix, SudoUserName, nodePath)
	// sudo ignores names containing a dot, so the temp file is inert.
	tmp := n.sudoersPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o440); err != nil {
		return err
	}
	if out, err := exec.Command("visudo", "-c", "-q", "-f", tmp).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("visudo rejected the drop-in: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, n.sudoersPath()); err != nil {
		os.Remove(tmp)
		return err
	}
	n.sudoers = n.sudoersPath()
	return nil
}

func (n *Net) sudoersPath() string {
	return filepath.Join(sudoersDir, "testnet-"+n.cfg.prefix)
}

// passwordLocked reports whether the shadow entry of name starts with "!".
func passwordLocked(name string) (bool, error) {
	data, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return false, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		fields := strings.SplitN(line, ":", 3)
		if len(fields) >= 2 && fields[0] == name {
			return strings.HasPrefix(fields[1], "!"), nil
		}
	}
	return false, fmt.Errorf("user %s has no entry in /etc/shadow", name)
}

// Nodes returns the nodes in order (node i has address .10+i).
func (n *Net) Nodes() []*Node { return n.nodes }

// Node returns the node with the given name, or nil.
func (n *Net) Node(name string) *Node {
	for _, nd := range n.nodes {
		if nd.Name == name {
			return nd
		}
	}
	return nil
}

// Prefix returns the prefix naming this Net's namespaces and interfaces.
func (n *Net) Prefix() string { return n.cfg.prefix }

// AdminAddr returns the root namespace's address on the bridge (host .1).
func (n *Net) AdminAddr() string { return n.cfg.admin.String() }

// Subnet returns the network the nodes live on.
func (n *Net) Subnet() string { return n.cfg.subnet.String() }

// Home returns a temporary HOME whose .ssh holds only the per-run client key
// (id_ed25519) and known_hosts; point HOME here with t.Setenv.
func (n *Net) Home() string { return n.home }

// ClientKeyFile returns the path of the per-run client private key (0600,
// OpenSSH format) that root (and SudoUserName) on every node accept.
func (n *Net) ClientKeyFile() string { return n.keyFile }

// ClientSigner returns the per-run client key as a signer.
func (n *Net) ClientSigner() ssh.Signer { return n.signer }

// KnownHostsFile returns a known_hosts file listing every node's host key by
// IP address.
func (n *Net) KnownHostsFile() string { return n.knownHosts }

// ClientConfig returns an SSH client config for user that authenticates with
// the client key and checks host keys against KnownHostsFile.
func (n *Net) ClientConfig(user string) (*ssh.ClientConfig, error) {
	cb, err := knownhosts.New(n.knownHosts)
	if err != nil {
		return nil, fmt.Errorf("testnet: load %s: %w", n.knownHosts, err)
	}
	return &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(n.signer)},
		HostKeyCallback: cb,
		Timeout:         5 * time.Second,
	}, nil
}

// Dial opens an SSH connection to nd as user, with ClientConfig.
func (n *Net) Dial(nd *Node, user string) (*ssh.Client, error) {
	cfg, err := n.ClientConfig(user)
	if err != nil {
		return nil, err
	}
	c, err := ssh.Dial("tcp", nd.SSHAddr(), cfg)
	if err != nil {
		return nil, fmt.Errorf("testnet: ssh %s@%s (%s): %w", user, nd.Name, nd.SSHAddr(), err)
	}
	return c, nil
}

// SetService defines (or redefines) a unit of the systemctl stand-in on
// every node. A running instance keeps running until restarted.
func (n *Net) SetService(name string, def ServiceDef) error {
	return forEach(len(n.nodes), func(i int) error { return n.nodes[i].SetService(name, def) })
}

// Close stops every process started in the nodes (SIGTERM, then SIGKILL),
// deletes the namespaces and the root-side interface and removes the sudoers
// drop-in. It is idempotent and is registered with t.Cleanup by New.
func (n *Net) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Net) close() error {
	if n.tb.Failed() {
		n.logTails()
	}
	var errs []error
	if err := forEach(len(n.nodes), func(i int) error { return n.nodes[i].shutdown() }); err != nil {
		errs = append(errs, err)
	}
	if err := removeNetworks(n.cfg.prefix); err != nil {
		errs = append(errs, err)
	}
	if n.sudoers != "" {
		if err := os.Remove(n.sudoers); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// logTails logs the end of the first nodes' sshd logs to help a failed test.
func (n *Net) logTails() {
	for i, nd := range n.nodes {
		if i == 5 {
			n.tb.Logf("testnet: (logs of %d more nodes not shown)", len(n.nodes)-i)
			break
		}
		data, err := os.ReadFile(filepath.Join(nd.Root, "logs", "sshd.log"))
		if err != nil {
			continue
		}
		n.tb.Logf("testnet: node %s sshd.log (tail):\n%s", nd.Name, tail(string(data), 15))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitTCP dials addr until it accepts, p exits or timeout passes.
func waitTCP(addr string, p *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("exited before listening on %s: %v", addr, p.Wait())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %v: %w", addr, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
