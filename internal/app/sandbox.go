package app

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mtlsctl/mtlsctl/examples"
	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// SandboxOptions are the options of `sandbox up|down|serve`.
type SandboxOptions struct {
	Dir string // the sandbox directory (required)
	// Example is an embedded example topology (edge-5, edge-9, edge-12,
	// edge-13); "" means the topology the sandbox already has, else edge-5.
	Example string
	// ClusterFile is the user's own cluster file (-i given explicitly):
	// its nodes become sandbox nodes. Not with Example.
	ClusterFile string

	// exe is the program started as the server ("" = os.Executable());
	// wait bounds how long up waits for it (0 = SandboxStartTimeout).
	exe  string
	wait time.Duration
}

// SandboxStartTimeout bounds how long `sandbox up` waits for every node's
// SSH server to listen.
const SandboxStartTimeout = 15 * time.Second

// sandboxStopTimeout bounds how long `sandbox down` waits for the server
// to exit after SIGTERM.
const sandboxStopTimeout = 10 * time.Second

// sandboxFakes says plainly what the sandbox does not do.
const sandboxFakes = "the sandbox nodes hold files but run no Consul agent, proxy or firewall: their `consul`, `systemctl` and `iptables` are stand-ins that only record their calls (in %s), and their `ss` reports every restarted proxy as listening"

// The files of a sandbox directory.
const (
	sbCluster  = "cluster.yaml"
	sbKnown    = "known_hosts"
	sbEnv      = "env"
	sbPid      = "sandbox.pid"
	sbReady    = "sandbox.ready"
	sbLog      = "sandbox.log"
	sbState    = "state"
	sbHome     = "home"
	sbHostKeys = "hostkeys"
	sbNodes    = "nodes"
)

// sandboxDist makes a command behave as the demo does when its cluster
// file is a sandbox's (written by `sandbox up`): the Consul calls are
// skipped (no agent runs there), SSH keys come from the sandbox's home, not
// the user's ~/.ssh, and progress says what the stand-ins faked. A cluster
// file that does not load is left for the command itself to report.
func (c Common) sandboxDist(d DistOptions) DistOptions {
	t, err := inventory.Load(c.Inventory)
	if err != nil || t.Cluster.Sandbox == nil {
		return d
	}
	d.SkipLive, d.sandbox = true, t.Cluster.Sandbox.Dir
	if d.HomeDir == "" {
		d.HomeDir = filepath.Join(t.Cluster.Sandbox.Dir, sbHome)
	}
	if d.annotate == nil {
		d.annotate = sandboxProgress
	}
	return d
}

// sandboxStatusNote says, in a sandbox's status, what the sandbox fakes.
func (c Common) sandboxStatusNote(d DistOptions) {
	if d.sandbox != "" {
		fmt.Fprintf(c.logw(), "sandbox: "+sandboxFakes+"; status shows files and drift, no live Consul health\n",
			filepath.Join(d.sandbox, sbNodes, "<node>", "calls.log"))
	}
}

// sandboxSkips says once, at the start of a rotation in a sandbox, which
// live steps it leaves out and why.
func (c Common) sandboxSkips(skipped, runs string) {
	fmt.Fprintf(c.logw(), "sandbox: no Consul agent runs on the sandbox nodes, so this rotation skips %s; it still %s\n", skipped, runs)
}

// SandboxUp starts the sandbox servers in a background process (`sandbox
// serve`) and returns once every node listens; it writes DIR/cluster.yaml
// for the other commands. Running it on a sandbox that runs is a no-op.
func SandboxUp(ctx context.Context, c Common, o SandboxOptions) error {
	if o.Dir == "" {
		return Usagef("sandbox up: --dir DIR is required")
	}
	if o.Example != "" && o.ClusterFile != "" {
		return Usagef("sandbox up: --example %s and -i/--inventory %s (or MTLSCTL_INVENTORY) both given: give one of them", o.Example, o.ClusterFile)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	pid, state, err := sandboxProcess(dir)
	if err != nil {
		return err
	}
	if state == procOurs {
		t, err := inventory.Load(filepath.Join(dir, sbCluster))
		if err != nil {
			return err
		}
		c.printf("sandbox: already running in %s (process %d); nothing to do\n", dir, pid)
		if o.Example != "" || (o.ClusterFile != "" && o.ClusterFile != filepath.Join(dir, sbCluster)) {
			c.printf("sandbox: --example/-i left unused: to change its nodes, run `mtlsctl sandbox down --dir %s` first\n", shellQuote(dir))
		}
		c.sandboxNext(t, dir)
		return nil
	}
	if state == procOther {
		return fmt.Errorf("%s names process %d, which is not this sandbox's server: make sure it is not, remove the file, and run `sandbox up` again", filepath.Join(dir, sbPid), pid)
	}
	t, example, err := sandboxTopology(dir, o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeSandboxCluster(t, dir); err != nil {
		return err
	}
	if err := writeSandboxEnv(dir); err != nil {
		return err
	}

	exe := o.exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("sandbox up: cannot tell which program to start: %w", err)
		}
	}
	logFile := filepath.Join(dir, sbLog)
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	readyFile := filepath.Join(dir, sbReady)
	if err := os.Remove(readyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	cmd := exec.Command(exe, "sandbox", "serve", "--dir", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: it outlives this command and the terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sandbox up: starting %s: %w", exe, err)
	}
	child := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pidFile := filepath.Join(dir, sbPid)
	if err := atomicfile.WriteFile(pidFile, []byte(strconv.Itoa(child)+"\n"), 0o644); err != nil {
		cmd.Process.Kill()
		return err
	}

	fail := func(why string) error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.Remove(pidFile)
		fmt.Fprintf(c.stderr(), "sandbox: %s; the end of %s:\n%s", why, logFile, logTail(logFile, 20))
		return fmt.Errorf("%w: sandbox up: %s (log: %s)", ErrReported, why, logFile)
	}
	wait := o.wait
	if wait <= 0 {
		wait = SandboxStartTimeout
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(readyFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(child) {
			break
		}
		select {
		case err := <-exited:
			os.Remove(pidFile)
			fmt.Fprintf(c.stderr(), "sandbox: the server exited before its nodes were ready (%v); the end of %s:\n%s", err, logFile, logTail(logFile, 20))
			return fmt.Errorf("%w: sandbox up: the server exited (log: %s)", ErrReported, logFile)
		case <-ctx.Done():
			return fail("interrupted")
		case <-deadline.C:
			return fail(fmt.Sprintf("its nodes were not all listening after %s", wait))
		case <-tick.C:
		}
	}
	// The server may have moved a port that was taken: read what it wrote.
	if t, err = inventory.Load(filepath.Join(dir, sbCluster)); err != nil {
		return fail(err.Error())
	}
	if err := sandboxDialAll(t, 5*time.Second); err != nil {
		return fail(err.Error())
	}
	// The child goes on alone: this process exits without waiting for it.
	cmd.Process.Release()
	c.printf("sandbox: %d node(s) of %s up in %s, one SSH server each on 127.0.0.1, served by process %d (log: %s)\n",
		len(t.Nodes), example, dir, child, logFile)
	c.sandboxNext(t, dir)
	return nil
}

// sandboxNext prints what the sandbox fakes and the commands to run next.
func (c Common) sandboxNext(t *inventory.Topology, dir string) {
	c.printf(sandboxFakes+"\n", filepath.Join(dir, sbNodes, "<node>", "calls.log"))
	ports := make([]string, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		ports = append(ports, fmt.Sprintf("%s:%d", n.Name, n.SSHPort))
	}
	c.printf("nodes: %s\n", strings.Join(ports, " "))
	g := fmt.Sprintf("mtlsctl -i %s --state %s", shellQuote(filepath.Join(dir, sbCluster)), shellQuote(filepath.Join(dir, sbState)))
	c.printf("next:\n  %s generate\n  %s plan\n  %s apply --yes\n  %s status\n", g, g, g, g)
	c.printf("or `source %s` (sets MTLSCTL_INVENTORY and MTLSCTL_STATE) and run plain `mtlsctl plan`, `mtlsctl rotate certs --yes`, ...\n", shellQuote(filepath.Join(dir, sbEnv)))
	c.printf("stop it with `mtlsctl sandbox down --dir %s`\n", shellQuote(dir))
}

// sandboxTopology picks the sandbox's nodes: the user's cluster file, an
// example, or (neither given) the topology the sandbox already has, else
// edge-5. Ports a previous run used are kept, by node name; new nodes get
// a free port.
func sandboxTopology(dir string, o SandboxOptions) (*inventory.Topology, string, error) {
	existing := filepath.Join(dir, sbCluster)
	prev, prevErr := inventory.Load(existing)
	if prevErr == nil && prev.Cluster.Sandbox == nil {
		prevErr = fmt.Errorf("%s is not a sandbox's cluster file (no sandbox block): give a new --dir", existing)
		return nil, "", prevErr
	}
	var t *inventory.Topology
	var from string
	switch {
	case o.ClusterFile != "":
		var err error
		if t, err = inventory.Load(o.ClusterFile); err != nil {
			return nil, "", err
		}
		from = o.ClusterFile
	case o.Example == "" && prevErr == nil:
		t, from = prev, "cluster "+prev.Cluster.Name
	case o.Example == "" && !errors.Is(prevErr, fs.ErrNotExist):
		return nil, "", fmt.Errorf("sandbox up: %w (fix it, or give --example or -i to start from another topology)", prevErr)
	default:
		ex := o.Example
		if ex == "" {
			ex = "edge-5"
		}
		data, err := examples.FS.ReadFile(ex + ".yaml")
		if err != nil {
			return nil, "", Usagef("--example %q: no such example (try edge-5, edge-9, edge-12 or edge-13)", ex)
		}
		if t, err = inventory.Parse(ex+".yaml", data); err != nil {
			return nil, "", err
		}
		from = ex
	}
	prevPort := map[string]int{}
	if prevErr == nil {
		for _, n := range prev.Nodes {
			prevPort[n.Name] = n.SSHPort
		}
	}
	for _, n := range t.Nodes {
		port := prevPort[n.Name]
		if port == 0 {
			var err error
			if port, err = freePort(); err != nil {
				return nil, "", err
			}
		}
		n.SSHPort = port
	}
	if err := pointAtSandbox(t, dir); err != nil {
		return nil, "", err
	}
	t.Cluster.Sandbox = &inventory.Sandbox{Dir: dir}
	return t, from, nil
}

// freePort asks the kernel for a free loopback port. Another program may
// take it before the server listens; the server then picks another one.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("sandbox: no free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// pointAtSandbox sets the cluster's SSH settings to the sandbox's: every
// node on 127.0.0.1, the sandbox's client key and known_hosts, the current
// user (the sandbox cannot chown, so file owners are dropped). The caller
// adds the sandbox block that tells every command what these nodes are.
func pointAtSandbox(t *inventory.Topology, dir string) error {
	u, err := user.Current()
	if err != nil {
		return errors.New("sandbox: cannot tell the current user")
	}
	for _, n := range t.Nodes {
		n.SSHHost, n.SSHUser = "127.0.0.1", ""
	}
	t.Cluster.SSH.User = u.Username
	t.Cluster.SSH.IdentityFile = filepath.Join(dir, sbHome, ".ssh", "id_ed25519")
	t.Cluster.SSH.KnownHosts = filepath.Join(dir, sbKnown)
	t.Cluster.SSH.Bastion = ""
	t.Cluster.SSH.Sudo = false
	t.Cluster.Consul.User, t.Cluster.Consul.Group = "", ""
	return nil
}

func writeSandboxCluster(t *inventory.Topology, dir string) error {
	yml, err := inventory.Marshal(t.Cluster)
	if err != nil {
		return err
	}
	head := []byte("# written by `mtlsctl sandbox up`: the nodes are local sandbox SSH servers (see sandbox.dir)\n")
	return atomicfile.WriteFile(filepath.Join(dir, sbCluster), append(head, yml...), 0o644)
}

func writeSandboxEnv(dir string) error {
	env := fmt.Sprintf("# source this file to point mtlsctl at the sandbox in %s\nexport MTLSCTL_INVENTORY=%s\nexport MTLSCTL_STATE=%s\n",
		dir, shellQuote(filepath.Join(dir, sbCluster)), shellQuote(filepath.Join(dir, sbState)))
	return atomicfile.WriteFile(filepath.Join(dir, sbEnv), []byte(env), 0o644)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sandboxDialAll checks that every node answers an SSH handshake (its
// version banner) on its port.
func sandboxDialAll(t *inventory.Topology, timeout time.Duration) error {
	for _, n := range t.Nodes {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.SSHPort))
		conn, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		conn.SetDeadline(time.Now().Add(timeout))
		banner := make([]byte, 4)
		_, err = conn.Read(banner)
		conn.Close()
		if err != nil || string(banner) != "SSH-" {
			return fmt.Errorf("node %s: no SSH server answers on %s", n.Name, addr)
		}
	}
	return nil
}

// SandboxServe is the background process of `sandbox up`: it starts one
// SSH server per node of DIR/cluster.yaml, on the ports it names when they
// are free (else new ones, written back), writes DIR/sandbox.ready, and
// serves until ctx ends (SIGTERM), then closes its servers.
func SandboxServe(ctx context.Context, c Common, o SandboxOptions) error {
	if o.Dir == "" {
		return Usagef("sandbox serve: --dir DIR is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	clusterFile := filepath.Join(dir, sbCluster)
	t, err := inventory.Load(clusterFile)
	if err != nil {
		return err
	}
	if t.Cluster.Sandbox == nil || t.Cluster.Sandbox.Dir != dir {
		return fmt.Errorf("%s: not the cluster file of the sandbox in %s (its sandbox block names another directory): run `mtlsctl sandbox up --dir %s`", clusterFile, dir, dir)
	}
	want := map[string]int{}
	for _, n := range t.Nodes {
		want[n.Name] = n.SSHPort
	}
	sb, err := startSandbox(t, dir, true)
	if err != nil {
		return err
	}
	defer sb.close()
	moved := false
	for _, n := range t.Nodes {
		if n.SSHPort != want[n.Name] {
			c.printf("node %s: port %d was taken, it listens on %d now\n", n.Name, want[n.Name], n.SSHPort)
			moved = true
		}
	}
	if moved {
		if err := writeSandboxCluster(t, dir); err != nil {
			return err
		}
	}
	readyFile := filepath.Join(dir, sbReady)
	if err := atomicfile.WriteFile(readyFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	c.printf("%s sandbox: serving %d node(s) from %s (process %d)\n", time.Now().Format(time.RFC3339), len(t.Nodes), dir, os.Getpid())
	<-ctx.Done()
	os.Remove(readyFile)
	c.printf("%s sandbox: stopping\n", time.Now().Format(time.RFC3339))
	return nil
}

// SandboxDown stops the sandbox server of DIR, after checking that the
// process its pid file names really is that server.
func SandboxDown(c Common, o SandboxOptions) error {
	if o.Dir == "" {
		return Usagef("sandbox down: --dir DIR is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	pidFile := filepath.Join(dir, sbPid)
	pid, state, err := sandboxProcess(dir)
	if err != nil {
		return err
	}
	kept := fmt.Sprintf("node files and state stay in %s (`rm -rf %s` removes everything)", dir, shellQuote(dir))
	switch state {
	case procNone:
		c.printf("sandbox: nothing runs in %s; %s\n", dir, kept)
		return nil
	case procGone:
		os.Remove(pidFile)
		os.Remove(filepath.Join(dir, sbReady))
		c.printf("sandbox: process %d of %s is gone already (stale pid file removed); %s\n", pid, dir, kept)
		return nil
	case procOther:
		return fmt.Errorf("%s names process %d (%s), which is not this sandbox's server: not signalling it; if no sandbox runs in %s, remove %s",
			pidFile, pid, procName(pid), dir, pidFile)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sandbox down: signalling process %d: %w", pid, err)
	}
	if !waitGone(pid, sandboxStopTimeout) {
		// Checked again right before: never kill a process that took the PID.
		if _, st, _ := sandboxProcess(dir); st != procOurs {
			return fmt.Errorf("sandbox down: process %d changed while it was stopping: not signalling it again", pid)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		if !waitGone(pid, 2*time.Second) {
			return fmt.Errorf("sandbox down: process %d did not stop within %s, nor after SIGKILL", pid, sandboxStopTimeout)
		}
		c.printf("sandbox: process %d did not stop within %s after SIGTERM; killed it\n", pid, sandboxStopTimeout)
	}
	os.Remove(pidFile)
	os.Remove(filepath.Join(dir, sbReady))
	c.printf("sandbox: stopped (process %d); %s\n", pid, kept)
	return nil
}

// procState is what a sandbox's pid file names.
type procState int

const (
	procNone  procState = iota // no pid file
	procGone                   // the process is gone (stale pid file)
	procOurs                   // this sandbox's server
	procOther                  // a live process that is not
)

// sandboxProcess reads DIR/sandbox.pid and tells whether the process is
// this sandbox's server: alive, and its command line is
// `... sandbox serve --dir DIR`.
func sandboxProcess(dir string) (int, procState, error) {
	pidFile := filepath.Join(dir, sbPid)
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, procNone, nil
	}
	if err != nil {
		return 0, procNone, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, procNone, fmt.Errorf("%s: %q is not a process id: remove the file if no sandbox runs in %s", pidFile, strings.TrimSpace(string(b)), dir)
	}
	if !alive(pid) {
		return pid, procGone, nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		if !alive(pid) {
			return pid, procGone, nil
		}
		return pid, procOther, nil
	}
	if isServeCommand(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), dir) {
		return pid, procOurs, nil
	}
	return pid, procOther, nil
}

// isServeCommand reports whether args (a process's argv) run `sandbox
// serve --dir DIR`.
func isServeCommand(args []string, dir string) bool {
	if len(args) < 5 {
		return false
	}
	serve, dirOK := false, false
	for i := 1; i+1 < len(args); i++ {
		switch {
		case args[i] == "sandbox" && args[i+1] == "serve":
			serve = true
		case args[i] == "--dir" && args[i+1] == dir:
			dirOK = true
		}
	}
	return serve && dirOK
}

// alive reports whether pid is a process that has not exited (a zombie
// has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func waitGone(pid int, d time.Duration) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if !alive(pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return !alive(pid)
}

// procName is a process's program name, for messages (not its arguments:
// another program's argv is none of our business).
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "unknown program"
	}
	return strings.TrimSpace(string(b))
}

// logTail is the last n lines of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read it: %v)\n", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := string(bytes.Join(lines, []byte("\n")))
	if out == "" {
		return "(empty)\n"
	}
	return out + "\n"
}

type sandbox struct {
	servers []*sshsandbox.Server
}

func (s *sandbox) close() {
	for _, srv := range s.servers {
		srv.Close()
	}
}

// startSandbox starts one SSH server per node, with its files under
// dir/nodes/<node> and its host key kept in dir/hostkeys/<node> (made on
// first use), and points the cluster's SSH settings at them: the sandbox's
// client key (made on first use), a known_hosts file with every server's
// host key (so host keys are verified as on a real fleet). With keepPorts
// a node listens on its ssh_port when that is free, else on a new port
// (n.SSHPort says which).
func startSandbox(t *inventory.Topology, dir string, keepPorts bool) (*sandbox, error) {
	if err := pointAtSandbox(t, dir); err != nil {
		return nil, err
	}
	signer, err := loadOrMakeKey(t.Cluster.SSH.IdentityFile, "mtlsctl sandbox client")
	if err != nil {
		return nil, err
	}
	sb := &sandbox{}
	var known strings.Builder
	for _, n := range t.Nodes {
		hostKey, err := loadOrMakeKey(filepath.Join(dir, sbHostKeys, n.Name), "mtlsctl sandbox host "+n.Name)
		if err != nil {
			sb.close()
			return nil, err
		}
		opts := sshsandbox.Options{
			Dir:            filepath.Join(dir, sbNodes, n.Name),
			HostKey:        hostKey,
			AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()},
		}
		var srv *sshsandbox.Server
		if keepPorts && n.SSHPort != 0 {
			opts.Port = n.SSHPort
			srv, err = sshsandbox.Start(opts)
			opts.Port = 0
		}
		if srv == nil {
			srv, err = sshsandbox.Start(opts)
		}
		if err != nil {
			sb.close()
			return nil, fmt.Errorf("starting the sandbox SSH server for %s: %w", n.Name, err)
		}
		sb.servers = append(sb.servers, srv)
		n.SSHPort = srv.Port()
		fmt.Fprintf(&known, "[127.0.0.1]:%d %s", srv.Port(), ssh.MarshalAuthorizedKey(srv.HostKey()))
	}
	if err := atomicfile.WriteFile(t.Cluster.SSH.KnownHosts, []byte(known.String()), 0o600); err != nil {
		sb.close()
		return nil, err
	}
	return sb, nil
}

// loadOrMakeKey reads the ed25519 private key at path, or makes one and
// writes it there (0600, atomically, its directory 0700).
func loadOrMakeKey(path, comment string) (ssh.Signer, error) {
	if b, err := os.ReadFile(path); err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: not a usable private key (%v): remove it to make a new one", path, err)
		}
		return s, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}
