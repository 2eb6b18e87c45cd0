package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
	"github.com/mtlsctl/mtlsctl/inventory"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// netcatEnv turns the test binary into a tiny netcat for ProxyCommand
// tests: with it set to host:port, the binary copies stdin to that address
// and the answers to stdout.
const netcatEnv = "MTLSCTL_TEST_NETCAT"

func TestMain(m *testing.M) {
	if addr := os.Getenv(netcatEnv); addr != "" {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "netcat:", err)
			os.Exit(1)
		}
		go func() { io.Copy(c, os.Stdin); c.(*net.TCPConn).CloseWrite() }()
		io.Copy(os.Stdout, c)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// hopEnv is a temp HOME (client key, known_hosts, ~/.ssh/config) and a
// cluster whose nodes the tests add.
type hopEnv struct {
	t      *testing.T
	home   string
	key    ssh.Signer
	kh     strings.Builder
	config string
	topo   *inventory.Topology
}

func newHopEnv(t *testing.T) *hopEnv {
	t.Helper()
	h := &hopEnv{t: t, home: t.TempDir()}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(h.home, ".ssh"), 0o700)
	if err := os.WriteFile(filepath.Join(h.home, ".ssh", "id_ed25519"), pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	h.key, _ = ssh.NewSignerFromKey(priv)
	h.topo = &inventory.Topology{Cluster: &inventory.Cluster{Name: "t",
		SSH:         inventory.SSH{User: "root", IdentityFile: "~/.ssh/id_ed25519", KnownHosts: "~/.ssh/known_hosts"},
		Datacenters: []inventory.Datacenter{{Name: "dc1"}}}}
	return h
}

// sandbox starts an in-process SSH server (it forwards direct-tcpip to
// loopback, so it can be a bastion) and lists its key in known_hosts.
func (h *hopEnv) sandbox() *sshsandbox.Server {
	h.t.Helper()
	srv, err := sshsandbox.Start(sshsandbox.Options{AuthorizedKeys: []ssh.PublicKey{h.key.PublicKey()}, Dir: h.t.TempDir()})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { srv.Close() })
	h.known(srv.Addr(), srv.HostKey())
	return srv
}

func (h *hopEnv) known(name string, key ssh.PublicKey) {
	h.kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(name)}, key) + "\n")
}

func (h *hopEnv) node(name, host string, port int) *inventory.Node {
	n := &inventory.Node{Name: name, Address: "127.0.0.1", SSHHost: host, SSHPort: port, Datacenter: "dc1"}
	h.topo.Nodes = append(h.topo.Nodes, n)
	h.topo.Cluster.Datacenters[0].Nodes = append(h.topo.Cluster.Datacenters[0].Nodes, n)
	return n
}

// pool writes known_hosts and ~/.ssh/config and makes a pool with a short
// connect timeout; only the test's known_hosts is read.
func (h *hopEnv) pool(o Options) *Pool {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.home, ".ssh", "known_hosts"), []byte(h.kh.String()), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if h.config != "" {
		if err := os.WriteFile(filepath.Join(h.home, ".ssh", "config"), []byte(h.config), 0o600); err != nil {
			h.t.Fatal(err)
		}
	}
	o.HomeDir = h.home
	o.KnownHostsFiles = []string{}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 500 * time.Millisecond
	}
	o.StepTimeout = 20 * time.Second
	p, err := New(h.topo, o)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(p.Close)
	return p
}

// reach connects to n and runs one step; a hung hop must not outlive the
// generous bound of the context.
func reach(t *testing.T, p *Pool, n *inventory.Node) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := p.Conn(ctx, n)
	if err == nil {
		var out string
		out, err = c.Run(ctx, "hello", "echo hello")
		if err == nil && out != "hello\n" {
			err = fmt.Errorf("step printed %q", out)
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("still connecting after 30s (hop without a deadline): %v", err)
	}
	return err
}

// stallListener accepts TCP connections and never sends a byte.
func stallListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
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
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// fakeBastion is an SSH server that logs anyone in and then answers
// direct-tcpip channel opens as mode says: "ignore" never answers,
// "silent" accepts the channel and never sends on it, "reject" refuses it
// as administratively prohibited.
type fakeBastion struct {
	addr   string
	key    ssh.PublicKey
	opened atomic.Int32 // channel opens received
}

func startFakeBastion(t *testing.T, h *hopEnv, mode string) *fakeBastion {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBastion{addr: ln.Addr().String(), key: signer.PublicKey()}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
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
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				var held []ssh.NewChannel
				for nc := range chans {
					b.opened.Add(1)
					switch mode {
					case "ignore":
						held = append(held, nc)
					case "silent":
						if ch, rq, err := nc.Accept(); err == nil {
							go ssh.DiscardRequests(rq)
							go io.Copy(io.Discard, ch)
						}
					default:
						nc.Reject(ssh.Prohibited, "administratively prohibited")
					}
				}
				_ = held
			}()
		}
	}()
	h.known(b.addr, b.key)
	return b
}

// Every hop has a deadline: a hop that stalls makes the node fail with
// ErrTimeout naming the hop and what to check, long before the bound.
func TestHungHopsTimeOut(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(t *testing.T, h *hopEnv, o *Options) *inventory.Node
		wantErr error
		want    []string
	}{
		{name: "node accepts TCP and never speaks", wantErr: ErrTimeout,
			setup: func(t *testing.T, h *hopEnv, o *Options) *inventory.Node {
				host, port, _ := net.SplitHostPort(stallListener(t))
				p, _ := strconv.Atoi(port)
				return h.node("n1", host, p)
			},
			want: []string{"accepted the connection but sent no SSH banner within 500ms", "check that sshd listens there"}},
		{name: "TCP connect never answered", wantErr: ErrTimeout,
			setup: func(t *testing.T, h *hopEnv, o *Options) *inventory.Node {
				o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					<-ctx.Done() // a firewall that drops the SYN
					return nil, ctx.Err()
				}
				return h.node("n1", "192.0.2.7", 22)
			},
			want: []string{"192.0.2.7:22 did not accept a TCP connection within 500ms", "firewall"}},
		{name: "bastion accepts TCP and never speaks", wantErr: ErrTimeout,
			setup: func(t *testing.T, h *hopEnv, o *Options) *inventory.Node {
				h.topo.Cluster.SSH.Bastion = "jump@" + stallListener(t)
				return h.node("n1", "127.0.0.1", 22)
			},
			want: []string{"bastion 127.0.0.1:", "sent no SSH banner within 500ms"}},
		{name: "bastion ignores the channel open", wantErr: ErrTimeout,
			setup: func(t *testing.T, h *hopEnv, o *Options) *inventory.Node {
				b := startFakeBastion(t, h, "ignore")
				h.topo.Cluster.SSH.Bastion = b.addr
				return h.node("n1", "10.0.0.5", 22)
			},
			want: []string{"bastion 127.0.0.1:", "accepted the login but did not open a channel to 10.0.0.5:22 within 500ms", "AllowTcpForwarding"}},
		{name: "bastion opens the channel and the node never speaks", wantErr: ErrTimeout,
			setup: func(t *testing.T, h *hopEnv, o *Options) *inventory.Node {
				b := startFakeBastion(t, h, "silent")
				h.topo.Cluster.SSH.Bastion = b.addr
				return h.node("n1", "10.0.0.5", 22)
			},
			want: []string{"10.0.0.5:22 through bastion 127.0.0.1:", "sent no SSH banner within 500ms"}},
		{name: "bastion refuses the channel", wantErr: ErrUnreachable,
			setup: func(t *testing.T, h *hopEnv, o *Options) *inventory.Node {
				b := startFakeBastion(t, h, "reject")
				h.topo.Cluster.SSH.Bastion = b.addr
				return h.node("n1", "10.0.0.5", 22)
			},
			want: []string{"refused a channel to 10.0.0.5:22", "AllowTcpForwarding and PermitOpen"}},
		{name: "second bastion of a chain never speaks", wantErr: ErrTimeout,
			setup: func(t *testing.T, h *hopEnv, o *Options) *inventory.Node {
				b1 := h.sandbox()
				h.topo.Cluster.SSH.Bastion = b1.Addr() + "," + stallListener(t)
				return h.node("n1", "10.0.0.5", 22)
			},
			want: []string{"(through bastion " + "127.0.0.1:", "sent no SSH banner"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHopEnv(t)
			var o Options
			n := tc.setup(t, h, &o)
			err := reach(t, h.pool(o), n)
			t.Logf("%v", err)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// Nodes behind a bastion that never speaks fail together: the failed
// bastion is remembered for the command instead of being waited out once
// per node.
func TestDeadBastionTriedOnce(t *testing.T) {
	h := newHopEnv(t)
	addr := stallListener(t)
	h.topo.Cluster.SSH.Bastion = addr
	var dials atomic.Int32
	nodes := []*inventory.Node{h.node("n1", "10.0.0.1", 22), h.node("n2", "10.0.0.2", 22), h.node("n3", "10.0.0.3", 22)}
	p := h.pool(Options{Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, a)
	}})
	for _, n := range nodes {
		if err := reach(t, p, n); !errors.Is(err, ErrTimeout) {
			t.Errorf("%s: %v, want ErrTimeout", n.Name, err)
		}
	}
	if got := dials.Load(); got != 1 {
		t.Errorf("the dead bastion was dialled %d times for 3 nodes, want 1", got)
	}
}

// ProxyJump "a,b": the node is reached through b, b through a, and only a
// is dialled directly; each bastion's host key is checked.
func TestProxyJumpChain(t *testing.T) {
	t.Run("cluster bastion chain", func(t *testing.T) {
		h := newHopEnv(t)
		a, b, target := h.sandbox(), h.sandbox(), h.sandbox()
		h.topo.Cluster.SSH.Bastion = "jump@" + a.Addr() + ",hop@" + b.Addr()
		n := h.node("n1", "127.0.0.1", target.Port())
		var direct []string
		var mu sync.Mutex
		p := h.pool(Options{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			direct = append(direct, addr)
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}})
		if err := reach(t, p, n); err != nil {
			t.Fatal(err)
		}
		if len(direct) != 1 || direct[0] != a.Addr() {
			t.Errorf("direct dials %v, want only the first bastion %s", direct, a.Addr())
		}
		for name, srv := range map[string]*sshsandbox.Server{"a": a, "b": b, "node": target} {
			if srv.Accepts() != 1 {
				t.Errorf("%s accepted %d connections, want 1", name, srv.Accepts())
			}
		}
		if _, err := os.Stat(b.Path("/home/hop")); err != nil {
			t.Errorf("did not log in to the second bastion as hop: %v", err)
		}
		if _, err := os.Stat(a.Path("/home/jump")); err != nil {
			t.Errorf("did not log in to the first bastion as jump: %v", err)
		}
	})
	t.Run("ssh config ProxyJump of a ProxyJump", func(t *testing.T) {
		h := newHopEnv(t)
		a, b, target := h.sandbox(), h.sandbox(), h.sandbox()
		h.config = fmt.Sprintf("Host node\n  HostName 127.0.0.1\n  Port %d\n  ProxyJump hop-b\n"+
			"Host hop-b\n  HostName 127.0.0.1\n  Port %d\n  ProxyJump hop-a\n"+
			"Host hop-a\n  HostName 127.0.0.1\n  Port %d\n", target.Port(), b.Port(), a.Port())
		n := h.node("n1", "node", 0)
		if err := reach(t, h.pool(Options{}), n); err != nil {
			t.Fatal(err)
		}
		for name, srv := range map[string]*sshsandbox.Server{"a": a, "b": b, "node": target} {
			if srv.Accepts() != 1 {
				t.Errorf("%s accepted %d connections, want 1", name, srv.Accepts())
			}
		}
	})
	t.Run("second bastion's host key is checked", func(t *testing.T) {
		h := newHopEnv(t)
		a := h.sandbox()
		b, err := sshsandbox.Start(sshsandbox.Options{AuthorizedKeys: []ssh.PublicKey{h.key.PublicKey()}, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		target := h.sandbox()
		h.topo.Cluster.SSH.Bastion = a.Addr() + "," + b.Addr()
		n := h.node("n1", "127.0.0.1", target.Port())
		err = reach(t, h.pool(Options{}), n)
		if !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), "bastion "+b.Addr()) ||
			!strings.Contains(err.Error(), ssh.FingerprintSHA256(b.HostKey())) {
			t.Fatalf("error %v, want the unknown second bastion named with its fingerprint", err)
		}
		if target.Accepts() != 0 {
			t.Error("the node was reached through an unverified bastion")
		}
	})
}

// Bad ProxyJump specs and configs are refused with the place to fix.
func TestJumpSpecErrors(t *testing.T) {
	cases := []struct {
		name    string
		bastion string
		config  string
		want    []string
	}{
		{name: "empty hop", bastion: "a,,b", want: []string{"ssh.bastion in the cluster file", "hop 2", "[user@]host[:port]"}},
		{name: "bad port", bastion: "a:99999", want: []string{"ssh.bastion", "port \"99999\""}},
		{name: "loop", config: "Host node\n  ProxyJump a\nHost a\n  ProxyJump b\nHost b\n  ProxyJump a\n",
			want: []string{"ProxyJump for host node in ", "longer than 8 hops", "loop"}},
		{name: "both ProxyJump and ProxyCommand", config: "Host node\n  ProxyJump a\n  ProxyCommand nc %h %p\n",
			want: []string{"host node has both ProxyJump (a) and ProxyCommand (nc %h %p)", ".ssh/config"}},
		{name: "shell characters in a host for ProxyCommand", bastion: "jump;touch${IFS}pwned", config: "Host *\n  ProxyCommand nc %h %p\n",
			want: []string{"ProxyCommand for host jump;touch${IFS}pwned: %h would be", "a character the shell would interpret"}},
		{name: "unsupported ProxyCommand token", config: "Host node\n  ProxyCommand nc %C\n",
			want: []string{".ssh/config: ProxyCommand for host node: token %C is not supported"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHopEnv(t)
			h.topo.Cluster.SSH.Bastion = tc.bastion
			h.config = tc.config
			n := h.node("n1", "node", 22)
			err := reach(t, h.pool(Options{Dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, errors.New("nothing may be dialled")
			}}), n)
			if err == nil {
				t.Fatal("connected")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "nothing may be dialled") {
				t.Error("dialled before refusing the spec")
			}
		})
	}
}

// HostKeyAlias: the key is looked up and recorded under the alias, as
// OpenSSH does, never under the address.
func TestHostKeyAlias(t *testing.T) {
	setup := func(t *testing.T) (*hopEnv, *sshsandbox.Server, *inventory.Node) {
		h := newHopEnv(t)
		srv, err := sshsandbox.Start(sshsandbox.Options{AuthorizedKeys: []ssh.PublicKey{h.key.PublicKey()}, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		h.config = fmt.Sprintf("Host node\n  HostName 127.0.0.1\n  Port %d\n  HostKeyAlias node-key\n", srv.Port())
		return h, srv, h.node("n1", "node", 0)
	}
	t.Run("alias entry used", func(t *testing.T) {
		h, srv, n := setup(t)
		h.known("node-key", srv.HostKey())
		if err := reach(t, h.pool(Options{}), n); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("address entry alone is not enough", func(t *testing.T) {
		h, srv, n := setup(t)
		h.known(srv.Addr(), srv.HostKey())
		err := reach(t, h.pool(Options{}), n)
		if !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), "(node-key)") {
			t.Fatalf("error %v, want node-key unknown", err)
		}
	})
	t.Run("wrong key under the alias refused", func(t *testing.T) {
		h, srv, n := setup(t)
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		other, _ := ssh.NewSignerFromKey(priv)
		h.known("node-key", other.PublicKey())
		h.known(srv.Addr(), srv.HostKey()) // the address's entry must not rescue it
		err := reach(t, h.pool(Options{AcceptNewHostKeys: true}), n)
		if !errors.Is(err, ErrHostKeyMismatch) {
			t.Fatalf("error %v, want ErrHostKeyMismatch", err)
		}
	})
	t.Run("accept-new records under the alias", func(t *testing.T) {
		h, srv, n := setup(t)
		if err := reach(t, h.pool(Options{AcceptNewHostKeys: true}), n); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(h.home, ".ssh", "known_hosts"))
		want := knownhosts.Line([]string{"node-key"}, srv.HostKey())
		if strings.TrimSpace(string(b)) != want {
			t.Errorf("known_hosts = %q, want only %q", b, want)
		}
	})
}

// ~/.ssh/config's StrictHostKeyChecking no and UserKnownHostsFile
// /dev/null do not loosen the check; the refusal says so.
func TestSSHConfigCannotDisableHostKeyChecks(t *testing.T) {
	for _, opt := range []string{"StrictHostKeyChecking no", "UserKnownHostsFile /dev/null"} {
		t.Run(opt, func(t *testing.T) {
			h := newHopEnv(t)
			srv, err := sshsandbox.Start(sshsandbox.Options{AuthorizedKeys: []ssh.PublicKey{h.key.PublicKey()}, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			h.config = fmt.Sprintf("Host node\n  HostName 127.0.0.1\n  Port %d\n  %s\n", srv.Port(), opt)
			err = reach(t, h.pool(Options{}), h.node("n1", "node", 0))
			if !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), "mtlsctl ignores it") {
				t.Fatalf("error %v, want unknown host noting the ignored option", err)
			}
			if srv.Sessions().Exec != 0 {
				t.Error("logged in to an unverified host")
			}
		})
	}
}

// ProxyCommand runs with its tokens expanded; its stdin and stdout carry
// the SSH connection.
func TestProxyCommand(t *testing.T) {
	t.Run("connects", func(t *testing.T) {
		h := newHopEnv(t)
		srv := h.sandbox()
		tokens := filepath.Join(t.TempDir(), "tokens")
		h.config = fmt.Sprintf("Host node\n  HostName 127.0.0.1\n  Port %d\n  User deploy\n  ProxyCommand echo %%h %%p %%r %%n 100%%%% > %s; exec env %s=%%h:%%p %s\n",
			srv.Port(), tokens, netcatEnv, os.Args[0])
		n := h.node("n1", "node", 0)
		if err := reach(t, h.pool(Options{Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("ProxyCommand hosts must not be dialled")
		}}), n); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(tokens)
		if want := fmt.Sprintf("127.0.0.1 %d deploy node 100%%\n", srv.Port()); string(b) != want {
			t.Errorf("tokens expanded to %q, want %q", b, want)
		}
	})
	t.Run("hung command killed", func(t *testing.T) {
		h := newHopEnv(t)
		pidFile := filepath.Join(t.TempDir(), "pid")
		h.config = fmt.Sprintf("Host node\n  ProxyCommand echo $$ > %s; echo waiting for nothing >&2; exec sleep 60\n", pidFile)
		err := reach(t, h.pool(Options{}), h.node("n1", "node", 22))
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "through its ProxyCommand") ||
			!strings.Contains(err.Error(), "said: waiting for nothing") {
			t.Fatalf("error %v, want a timeout through the ProxyCommand with its stderr", err)
		}
		b, _ := os.ReadFile(pidFile)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid <= 0 {
			t.Fatalf("no pid recorded: %q", b)
		}
		// Killed and reaped by the pool, by PID; bounded wait for the reaper.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for syscall.Kill(pid, 0) == nil {
			select {
			case <-ctx.Done():
				t.Fatalf("ProxyCommand process %d still runs", pid)
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	t.Run("command fails", func(t *testing.T) {
		h := newHopEnv(t)
		h.config = "Host node\n  ProxyCommand echo no route to %h >&2; exit 1\n"
		err := reach(t, h.pool(Options{}), h.node("n1", "node", 22))
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "said: no route to node") {
			t.Fatalf("error %v, want unreachable with the command's stderr", err)
		}
	})
	t.Run("bastion reached by ProxyCommand", func(t *testing.T) {
		h := newHopEnv(t)
		bastion, target := h.sandbox(), h.sandbox()
		h.config = fmt.Sprintf("Host jumpy\n  HostName 127.0.0.1\n  Port %d\n  ProxyCommand exec env %s=%%h:%%p %s\n", bastion.Port(), netcatEnv, os.Args[0])
		h.topo.Cluster.SSH.Bastion = "jumpy"
		n := h.node("n1", "127.0.0.1", target.Port())
		if err := reach(t, h.pool(Options{Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("nothing is dialled directly")
		}}), n); err != nil {
			t.Fatal(err)
		}
		if bastion.Accepts() != 1 || target.Accepts() != 1 {
			t.Errorf("bastion accepted %d, node %d; want 1 each", bastion.Accepts(), target.Accepts())
		}
	})
}
