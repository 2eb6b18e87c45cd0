package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// nodePath is PATH inside nodes: the stand-in first, then Debian's default.
const nodePath = BinDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ErrNodeDown is returned by Exec and Start when the node's mount namespace
// is gone (the Net is closed).
var ErrNodeDown = errors.New("testnet: node is down")

// Node is one host: a network namespace with its own address and mount
// namespace, running sshd.
type Node struct {
	// Name is the node's name (Options.Names, or n1, n2, ...).
	Name string
	// Addr is the node's IPv4 address on the bridge.
	Addr string
	// NS is the network namespace name (<prefix>-<Index>).
	NS string
	// Root is the host directory holding the node's private dirs (under
	// fs/), sshd files (ssh/), logs (logs/) and services (services/).
	Root string
	// HostKey is the node's per-run ed25519 host key.
	HostKey ssh.PublicKey
	// Index is the node's 1-based position.
	Index int

	net *Net

	sshdMu  sync.Mutex // serialises StartSSHD and StopSSHD
	mu      sync.Mutex // guards the fields below
	mountns *Proc      // holds the node's mount namespace open
	sshd    *Proc
	procs   []*Proc
	closers []io.Closer // sockets opened by Listen and DialTimeout
}

// ExecError is returned by Exec when the command cannot run or fails.
type ExecError struct {
	Node   string   // node name
	Args   []string // the command
	Stderr string   // what the command wrote to stderr
	Err    error    // the underlying error, often an *exec.ExitError
}

func (e *ExecError) Error() string {
	msg := fmt.Sprintf("testnet: node %s: %s: %v", e.Node, strings.Join(e.Args, " "), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Unwrap returns the underlying error (often an *exec.ExitError).
func (e *ExecError) Unwrap() error { return e.Err }

// SSHAddr returns "Addr:22".
func (nd *Node) SSHAddr() string { return fmt.Sprintf("%s:%d", nd.Addr, SSHPort) }

func (nd *Node) sshDir() string   { return filepath.Join(nd.Root, "ssh") }
func (nd *Node) logDir() string   { return filepath.Join(nd.Root, "logs") }
func (nd *Node) svcDir() string   { return filepath.Join(nd.Root, "services") }
func (nd *Node) sshdConf() string { return filepath.Join(nd.sshDir(), "sshd_config") }

// Path maps a path as the node sees it to where it lives on the host: under
// Root for the node's private dirs, the path itself otherwise (the rest of
// the filesystem is shared with the host).
func (nd *Node) Path(p string) string {
	clean := path.Clean("/" + p)
	for _, d := range nd.net.cfg.privateDirs {
		if clean == d || strings.HasPrefix(clean, d+"/") {
			return filepath.Join(nd.Root, "fs", clean)
		}
	}
	return clean
}

// prepare writes the node's directories, keys, sshd config and stand-in.
func (nd *Node) prepare(authorizedKey []byte) error {
	for _, d := range []string{nd.sshDir(), nd.logDir(), nd.svcDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, d := range nd.net.cfg.privateDirs {
		if err := os.MkdirAll(nd.Path(d), 0o755); err != nil {
			return err
		}
		// The node's copy gets the host directory's mode and owner, so that
		// /root stays 0700 and a service user's dir stays its own.
		var st syscall.Stat_t
		if syscall.Stat(d, &st) == nil {
			if err := os.Chmod(nd.Path(d), os.FileMode(st.Mode&0o7777)); err != nil {
				return err
			}
			if err := os.Chown(nd.Path(d), int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
	}
	if nd.net.cfg.sudoUser {
		u, err := user.Lookup(SudoUserName)
		if err != nil {
			return err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(nd.Path("/home/"+SudoUserName), uid, gid); err != nil {
			return err
		}
	}
	if strings.ContainsAny(nd.Root, " \t\"'\\") {
		return fmt.Errorf("node %s: root %q contains spaces or quotes, which sshd_config cannot take", nd.Name, nd.Root)
	}
	hostKeyFile := filepath.Join(nd.sshDir(), "ssh_host_ed25519_key")
	signer, err := writeKeyPair(hostKeyFile, "testnet-"+nd.Name)
	if err != nil {
		return fmt.Errorf("node %s: host key: %w", nd.Name, err)
	}
	nd.HostKey = signer.PublicKey()
	authFile := filepath.Join(nd.sshDir(), "authorized_keys")
	if err := os.WriteFile(authFile, authorizedKey, 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`# sshd_config for testnet node %s, written by internal/testinfra/testnet.
ListenAddress %s
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
AllowTcpForwarding yes
MaxStartups 100:30:200
MaxSessions 64
SetEnv PATH=%s
Subsystem sftp internal-sftp
`, nd.Name, nd.SSHAddr(), hostKeyFile, filepath.Join(nd.sshDir(), "sshd.pid"), authFile, nodePath)
	if err := os.WriteFile(nd.sshdConf(), []byte(conf), 0o644); err != nil {
		return err
	}
	script := systemctlScript(nd.Name, nd.svcDir(), nd.net.cfg.unitDir)
	if err := writeFileAtomic(filepath.Join(nd.Path(BinDir), "systemctl"), []byte(script), 0o755); err != nil {
		return err
	}
	for name, def := range nd.net.cfg.services {
		if err := writeService(nd.svcDir(), name, def); err != nil {
			return fmt.Errorf("node %s: %w", nd.Name, err)
		}
	}
	return nil
}

// startMountNS starts the process that owns the node's mount namespace:
// inside the node's network namespace, unshare a mount namespace, bind the
// node's copies over the private dirs and sleep. Every other process of the
// node enters this namespace, so it survives sshd restarts.
//
// The node's copy of /run/netns does not pin namespaces deleted later:
// "ip netns del" unlinks the mountpoint, and the kernel then detaches the
// mounts on it in every mount namespace.
func (nd *Node) startMountNS() error {
	ready := filepath.Join(nd.Root, "mountns.ready")
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, d := range nd.net.cfg.privateDirs {
		fmt.Fprintf(&b, "mount --bind %s %s\n", shellQuote(nd.Path(d)), shellQuote(d))
	}
	fmt.Fprintf(&b, "touch %s\nexec sleep infinity </dev/null >/dev/null 2>&1\n", shellQuote(ready))
	cmd := exec.Command("ip", "netns", "exec", nd.NS,
		"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", b.String())
	p, err := startProc("mountns", filepath.Join(nd.logDir(), "mountns.log"), cmd)
	if err != nil {
		return fmt.Errorf("node %s: %w", nd.Name, err)
	}
	nd.mu.Lock()
	nd.mountns = p
	nd.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return nil
		}
		if p.Exited() || time.Now().After(deadline) {
			log, _ := os.ReadFile(p.LogFile)
			return fmt.Errorf("node %s: private mounts failed (%v): %s", nd.Name, p.err, strings.TrimSpace(string(log)))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// command builds "nsenter --net --mount -- args" for this node.
func (nd *Node) command(ctx context.Context, args ...string) (*exec.Cmd, error) {
	nd.mu.Lock()
	m := nd.mountns
	nd.mu.Unlock()
	if len(args) == 0 {
		return nil, fmt.Errorf("testnet: node %s: empty command", nd.Name)
	}
	if m == nil || m.Exited() {
		return nil, fmt.Errorf("%w: %s", ErrNodeDown, nd.Name)
	}
	full := append([]string{
		"--net=" + filepath.Join(netnsDir, nd.NS),
		fmt.Sprintf("--mount=/proc/%d/ns/mnt", m.PID),
		"--",
	}, args...)
	c := exec.CommandContext(ctx, "nsenter", full...)
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	c.Env = append(env, "PATH="+nodePath)
	return c, nil
}

// Exec runs a command inside the node (its network and mount namespaces, as
// root, PATH starting with BinDir) and returns its stdout. A failure is an
// *ExecError carrying stderr.
func (nd *Node) Exec(ctx context.Context, cmd ...string) ([]byte, error) {
	c, err := nd.command(ctx, cmd...)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	c.Stdout = &stdout
	c.Stderr = &stderr
	if err := c.Run(); err != nil {
		return stdout.Bytes(), &ExecError{Node: nd.Name, Args: cmd, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// Start starts a long-running process inside the node, tracked by PID, with
// its output in Root/logs/<name>.log. The process is stopped (Proc.Stop)
// when ctx is done and, at the latest, when the Net is closed.
func (nd *Node) Start(ctx context.Context, name string, cmd ...string) (*Proc, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("testnet: node %s: process name %q must match %s", nd.Name, name, nameRE)
	}
	c, err := nd.command(context.Background(), cmd...)
	if err != nil {
		return nil, err
	}
	p, err := startProc(name, filepath.Join(nd.logDir(), name+".log"), c)
	if err != nil {
		return nil, fmt.Errorf("testnet: node %s: %w", nd.Name, err)
	}
	nd.mu.Lock()
	nd.procs = append(nd.procs, p)
	nd.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Stop()
		case <-p.done:
		}
	}()
	return p, nil
}

// SetService defines (or redefines) a unit of the node's systemctl stand-in.
func (nd *Node) SetService(name string, def ServiceDef) error {
	if err := writeService(nd.svcDir(), name, def); err != nil {
		return fmt.Errorf("testnet: node %s: %w", nd.Name, err)
	}
	return nil
}

// ServicePID returns the PID of the running unit name (NAME or
// NAME.service) of the systemctl stand-in, read from its PID file; UnitPID
// also checks that the process is alive.
func (nd *Node) ServicePID(name string) (int, error) {
	name = strings.TrimSuffix(name, ".service")
	data, err := os.ReadFile(filepath.Join(nd.svcDir(), name, "pid"))
	if err != nil {
		return 0, fmt.Errorf("testnet: node %s: service %s is not running: %w", nd.Name, name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("testnet: node %s: service %s: bad PID file: %w", nd.Name, name, err)
	}
	return pid, nil
}

// ServiceLogFile returns the host path of the log (stdout and stderr) of the
// stand-in's unit name (NAME or NAME.service; one of Options.Services or a
// unit file).
func (nd *Node) ServiceLogFile(name string) string {
	name = strings.TrimSuffix(name, ".service")
	return filepath.Join(nd.svcDir(), name, "log")
}

// SSHDRunning reports whether the node's sshd is running.
func (nd *Node) SSHDRunning() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.sshd != nil && !nd.sshd.Exited()
}

// StartSSHD starts the node's sshd (again) and waits until it accepts TCP
// connections; a no-op when it runs. The host key stays the same.
func (nd *Node) StartSSHD() error {
	nd.sshdMu.Lock()
	defer nd.sshdMu.Unlock()
	if nd.SSHDRunning() {
		return nil
	}
	c, err := nd.command(context.Background(), sshdPath, "-D", "-e", "-f", nd.sshdConf())
	if err != nil {
		return err
	}
	p, err := startProc("sshd", filepath.Join(nd.logDir(), "sshd.log"), c)
	if err != nil {
		return fmt.Errorf("testnet: node %s: %w", nd.Name, err)
	}
	nd.mu.Lock()
	nd.sshd = p
	nd.mu.Unlock()
	if err := waitTCP(nd.SSHAddr(), p, nd.net.cfg.readyTimeout); err != nil {
		_ = p.stop(time.Second)
		log, _ := os.ReadFile(p.LogFile)
		return fmt.Errorf("testnet: node %s: sshd %v; sshd log:\n%s", nd.Name, err, tail(string(log), 30))
	}
	return nil
}

// StopSSHD stops the node's sshd and drops its open connections, as if the
// node went down; processes started in the node keep running.
func (nd *Node) StopSSHD() error {
	nd.sshdMu.Lock()
	defer nd.sshdMu.Unlock()
	nd.mu.Lock()
	p := nd.sshd
	nd.mu.Unlock()
	if p == nil || p.Exited() {
		return nil
	}
	// The listener's children serve the open connections; once it exits they
	// are reparented, so find them first.
	children := childPIDs(p.PID)
	err := p.stop(5 * time.Second)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	if err != nil {
		return fmt.Errorf("testnet: node %s: stop sshd: %w", nd.Name, err)
	}
	return nil
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name, which may contain spaces: state ppid ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) >= 2 && fields[1] == strconv.Itoa(pid) {
			kids = append(kids, child)
		}
	}
	return kids
}

// shutdown ends everything running in the node: it closes the sockets of
// Listen and DialTimeout, sends SIGTERM to every process in its network
// namespace (services started over ssh included), waits a short grace
// period, then SIGKILLs; finally it reaps the tracked processes.
func (nd *Node) shutdown() error {
	const grace = 3 * time.Second
	nd.mu.Lock()
	closers := nd.closers
	nd.closers = nil
	nd.mu.Unlock()
	for _, c := range closers {
		_ = c.Close()
	}
	pids := pidsInNetns(nd.NS)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for len(pidsInNetns(nd.NS)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var errs []error
	if err := killNetnsProcs(nd.NS); err != nil {
		errs = append(errs, err)
	}
	nd.mu.Lock()
	tracked := append([]*Proc{nd.sshd, nd.mountns}, nd.procs...)
	nd.mu.Unlock()
	for _, p := range tracked {
		if p != nil {
			if err := p.stop(time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
