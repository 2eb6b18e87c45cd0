package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
	"golang.org/x/crypto/ssh"
)

// maxHops bounds a ProxyJump chain after expansion; a longer one is almost
// certainly a loop in ~/.ssh/config (a's ProxyJump is b, b's is a).
const maxHops = 8

// endpoint is one SSH server on the way to a node (a bastion) or the node
// itself, after ~/.ssh/config.
type endpoint struct {
	alias string // the name given: ssh_host or address, or a ProxyJump hop's host
	host  string // after ~/.ssh/config HostName
	port  int
	user  string
	// jumps are the bastions to go through, outermost first: ProxyJump
	// "a,b" reaches a, then b through a, then the node through b.
	jumps    []string
	proxyCmd string // ProxyCommand as written (tokens not expanded), or ""
	keyAlias string // HostKeyAlias: the name known_hosts holds the key under
	ids      []string
	// err makes the endpoint unusable (a bad ProxyJump or ProxyCommand); it
	// is returned when the node is connected to.
	err error
}

func (e endpoint) addr() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// khName is the name the host key is looked up and recorded under in
// known_hosts: the HostKeyAlias when there is one (as in OpenSSH, the
// alias alone, without the port), else host:port.
func (e endpoint) khName() string {
	if e.keyAlias != "" {
		return net.JoinHostPort(e.keyAlias, "22")
	}
	return e.addr()
}

// endpoint resolves a node: the node's own ssh_* fields first, then
// ~/.ssh/config for that host, then the cluster's ssh section. The
// cluster's bastion wins over ~/.ssh/config's ProxyJump and ProxyCommand,
// as `ssh -J` does.
func (s *Pool) endpoint(n *inventory.Node) endpoint {
	c := s.topo.Cluster.SSH
	alias := n.SSHHost
	if alias == "" {
		alias = n.Address
	}
	e := s.resolve(alias, n.SSHUser, n.SSHPort, c)
	if c.Bastion != "" {
		e.proxyCmd = ""
		e.jumps, e.err = s.chain(c.Bastion, "ssh.bastion in the cluster file")
		return e
	}
	jump, cmd, err := s.proxyOf(alias)
	switch {
	case err != nil:
		e.err = err
	case jump != "":
		e.jumps, e.err = s.chain(jump, fmt.Sprintf("ProxyJump for host %s in %s", alias, s.cfgPath))
	default:
		e.proxyCmd = cmd
	}
	return e
}

// resolve fills in where and as whom to reach alias, without its proxies.
func (s *Pool) resolve(alias, user string, port int, c inventory.SSH) endpoint {
	e := endpoint{alias: alias, host: alias, user: user, port: port}
	if h := s.cfg(alias, "HostName"); h != "" {
		e.host = strings.ReplaceAll(h, "%h", alias)
	}
	if a := s.cfg(alias, "HostKeyAlias"); a != "" && !strings.EqualFold(a, "none") {
		e.keyAlias = a
	}
	if e.user == "" {
		e.user = s.cfg(alias, "User")
	}
	if e.user == "" {
		e.user = c.User
	}
	if e.user == "" {
		e.user = "root"
	}
	if e.port == 0 {
		e.port, _ = strconv.Atoi(s.cfg(alias, "Port"))
	}
	if e.port == 0 {
		e.port = c.Port
	}
	if e.port == 0 {
		e.port = 22
	}
	if c.IdentityFile != "" {
		e.ids = append(e.ids, s.expand(c.IdentityFile))
	}
	if s.sshCfg != nil {
		ids, _ := s.sshCfg.GetAll(alias, "IdentityFile")
		for _, id := range ids {
			e.ids = append(e.ids, s.expand(id))
		}
	}
	for _, id := range s.o.IdentityFiles {
		e.ids = append(e.ids, s.expand(id))
	}
	return e
}

// proxyOf returns ~/.ssh/config's ProxyJump and ProxyCommand for alias
// ("none" counts as unset). OpenSSH uses whichever of the two comes first;
// the parser cannot tell the order, so both at once is refused.
func (s *Pool) proxyOf(alias string) (jump, cmd string, err error) {
	jump, cmd = s.cfg(alias, "ProxyJump"), s.cfg(alias, "ProxyCommand")
	if strings.EqualFold(jump, "none") {
		jump = ""
	}
	if strings.EqualFold(cmd, "none") {
		cmd = ""
	}
	if jump != "" && cmd != "" {
		return "", "", fmt.Errorf("ssh config %s: host %s has both ProxyJump (%s) and ProxyCommand (%s); keep one of them",
			s.cfgPath, alias, jump, cmd)
	}
	return jump, cmd, nil
}

// chain expands a ProxyJump list the way OpenSSH does: the hops are reached
// in order, each through the one before, and the first hop itself through
// its own ProxyJump from ~/.ssh/config, if any. from says where the list
// came from, for messages.
func (s *Pool) chain(spec, from string) ([]string, error) {
	hops := strings.Split(spec, ",")
	for {
		for i, h := range hops {
			if _, err := s.parseJump(h); err != nil {
				return nil, fmt.Errorf("%s: hop %d (%q): %w", from, i+1, h, err)
			}
		}
		if len(hops) > maxHops {
			return nil, fmt.Errorf("%s: the bastion chain %s is longer than %d hops; is there a ProxyJump loop in %s?",
				from, strings.Join(hops, ","), maxHops, s.cfgPath)
		}
		first, _ := s.parseJump(hops[0])
		jump, _, err := s.proxyOf(first.alias)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
		if jump == "" {
			return hops, nil
		}
		hops = append(strings.Split(jump, ","), hops...)
	}
}

// parseJump resolves one ProxyJump hop, "[user@]host[:port]" (or
// ssh://[user@]host[:port]), through ~/.ssh/config. Its ProxyCommand counts
// only when it is the first hop.
func (s *Pool) parseJump(spec string) (endpoint, error) {
	rest := strings.TrimPrefix(spec, "ssh://")
	user := ""
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, rest = rest[:i], rest[i+1:]
	}
	host, port := rest, 0
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host = h
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return endpoint{}, fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
	}
	if host == "" || strings.ContainsAny(host, " \t/@") {
		return endpoint{}, errors.New("write each hop as [user@]host[:port]")
	}
	c := s.topo.Cluster.SSH
	e := s.resolve(host, user, port, inventory.SSH{User: c.User, IdentityFile: c.IdentityFile})
	_, e.proxyCmd, e.err = s.proxyOf(host)
	return e, nil
}

// bastionConn is one shared connection to a bastion, made once per chain
// prefix ("a", "a,b") and command. A failure is kept too, so that nodes
// behind a dead bastion fail at once instead of each waiting out the
// timeout again.
type bastionConn struct {
	ready  chan struct{} // closed once client or err is set
	client *ssh.Client
	label  string // "bastion host:port", with the route when chained
	err    error
	dead   atomic.Bool // the connection was lost: make a new one
}

func (b *bastionConn) close() {
	select {
	case <-b.ready:
		if b.client != nil {
			b.client.Close()
		}
	default: // still connecting: nothing to close yet
	}
}

// connect reaches the node at e: through its bastions, its ProxyCommand or
// straight over TCP, then the SSH handshake, each step under its own
// ConnectTimeout.
func (s *Pool) connect(ctx context.Context, node string, e endpoint) (*ssh.Client, error) {
	var via *bastionConn
	label := e.addr()
	if len(e.jumps) > 0 {
		var err error
		if via, err = s.bastionChain(ctx, e.jumps); err != nil {
			return nil, err
		}
		label += " through " + via.label
	} else if e.proxyCmd != "" {
		label += " through its ProxyCommand"
	}
	conn, err := s.dialHop(ctx, e, e.addr(), via)
	if err != nil {
		return nil, err
	}
	return s.handshake(ctx, node, e, conn, label)
}

// bastionChain returns the connection to the last hop of chain, making the
// missing ones, each through the one before.
func (s *Pool) bastionChain(ctx context.Context, chain []string) (*bastionConn, error) {
	var via *bastionConn
	for i := range chain {
		key := strings.Join(chain[:i+1], ",")
		s.bmu.Lock()
		b := s.bastions[key]
		if b != nil && b.dead.Load() {
			b = nil
		}
		if b == nil {
			b = &bastionConn{ready: make(chan struct{})}
			s.bastions[key] = b
			s.bmu.Unlock()
			b.client, b.label, b.err = s.dialBastion(ctx, chain[i], via)
			if b.client != nil {
				go func(b *bastionConn) {
					b.client.Wait()
					b.dead.Store(true)
				}(b)
			}
			close(b.ready)
		} else {
			s.bmu.Unlock()
			select {
			case <-b.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if b.err != nil {
			return nil, b.err
		}
		via = b
	}
	return via, nil
}

// dialBastion connects and logs in to one bastion, through via (the hop
// before it) when there is one.
func (s *Pool) dialBastion(ctx context.Context, spec string, via *bastionConn) (*ssh.Client, string, error) {
	e, err := s.parseJump(spec)
	if err == nil && via == nil {
		err = e.err // its ProxyCommand is used only as the first hop
	}
	if err != nil {
		return nil, "", fmt.Errorf("bastion %s: %w", spec, err)
	}
	if via != nil {
		e.proxyCmd = ""
	}
	label := "bastion " + e.addr()
	if via != nil {
		label += " (through " + via.label + ")"
	} else if e.proxyCmd != "" {
		label += " (through its ProxyCommand)"
	}
	conn, err := s.dialHop(ctx, e, "bastion "+e.addr(), via)
	if err != nil {
		return nil, label, err
	}
	c, err := s.handshake(ctx, "bastion "+spec, e, conn, label)
	return c, label, err
}

// dialHop opens the byte stream to e: a direct-tcpip channel through via
// when there is one, else e's ProxyCommand, else TCP (Options.Dial). Each
// is bounded by ConnectTimeout.
// name is e for messages ("host:port" or "bastion host:port").
func (s *Pool) dialHop(ctx context.Context, e endpoint, name string, via *bastionConn) (net.Conn, error) {
	switch {
	case via != nil:
		return s.dialChannel(ctx, e, via)
	case e.proxyCmd != "":
		return s.dialProxyCommand(e)
	}
	dctx, cancel := context.WithTimeout(ctx, s.o.ConnectTimeout)
	defer cancel()
	var c net.Conn
	var err error
	if s.o.Dial != nil {
		c, err = s.o.Dial(dctx, "tcp", e.addr())
	} else {
		var d net.Dialer
		c, err = d.DialContext(dctx, "tcp", e.addr())
	}
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: %s did not accept a TCP connection within %s: check the address and port, and that no firewall drops the packets",
				ErrTimeout, name, s.o.ConnectTimeout)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, name, err)
	}
	return c, nil
}

// dialChannel opens a direct-tcpip channel to e through the bastion. The SSH
// library waits for the bastion's answer without a deadline, so it runs
// under a context: on expiry the wait is abandoned (a channel confirmed
// later is closed at once) while the bastion's connection stays up for the
// other nodes behind it, which may well be reachable.
func (s *Pool) dialChannel(ctx context.Context, e endpoint, via *bastionConn) (net.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, s.o.ConnectTimeout)
	defer cancel()
	c, err := via.client.DialContext(cctx, "tcp", e.addr())
	if err == nil {
		return c, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var oce *ssh.OpenChannelError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("%w: %s accepted the login but did not open a channel to %s within %s: check that the bastion reaches %s and that its sshd forwards to it (AllowTcpForwarding, PermitOpen)",
			ErrTimeout, via.label, e.addr(), s.o.ConnectTimeout, e.addr())
	case errors.As(err, &oce) && oce.Reason == ssh.Prohibited:
		return nil, fmt.Errorf("%w: %s refused a channel to %s (%s): its sshd does not forward there; check AllowTcpForwarding and PermitOpen on the bastion",
			ErrUnreachable, via.label, e.addr(), oce.Message)
	case errors.As(err, &oce):
		return nil, fmt.Errorf("%w: %s could not connect to %s (%s): check that sshd listens there and that the bastion reaches it",
			ErrUnreachable, via.label, e.addr(), oce.Message)
	default:
		return nil, fmt.Errorf("%w: %s, channel to %s: %v", ErrUnreachable, via.label, e.addr(), err)
	}
}

// readCounter notes whether the peer sent anything, to tell "not an SSH
// server" from "a slow key exchange" when the handshake times out.
type readCounter struct {
	net.Conn
	n atomic.Int64
}

func (c *readCounter) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// handshake runs the SSH handshake with e over conn under ConnectTimeout.
// who names the node (or bastion) in host key messages; label says where
// the connection goes, for the other messages.
func (s *Pool) handshake(ctx context.Context, who string, e endpoint, conn net.Conn, label string) (*ssh.Client, error) {
	signers, err := s.loadSigners(e.ids)
	if err != nil {
		conn.Close()
		return nil, err
	}
	rc := &readCounter{Conn: conn}
	var hkErr error
	var hkSeen atomic.Bool
	check := s.keys.callback(who, s.strictNote(e.alias), &hkErr)
	cfg := &ssh.ClientConfig{
		User: e.user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			hkSeen.Store(true)
			return check(hostname, remote, key)
		},
		HostKeyAlgorithms: hostKeyAlgorithms(s.keys.knownTypes(e.khName())),
		Timeout:           s.o.ConnectTimeout,
	}
	// Deadline on the whole handshake: closing the connection unblocks it,
	// which works for tunnelled and ProxyCommand connections too (they have
	// no deadlines).
	var timedOut, cancelled bool
	var tmu sync.Mutex
	stop := make(chan struct{})
	go func() {
		t := time.NewTimer(s.o.ConnectTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			tmu.Lock()
			timedOut = true
			tmu.Unlock()
			conn.Close()
		case <-ctx.Done():
			tmu.Lock()
			cancelled = true
			tmu.Unlock()
			conn.Close()
		case <-stop:
		}
	}()
	// The address given is the name the host key callback looks up.
	sc, chans, reqs, err := ssh.NewClientConn(rc, e.khName(), cfg)
	close(stop)
	tmu.Lock()
	to, cc := timedOut, cancelled
	tmu.Unlock()
	if err == nil && (to || cc) {
		sc.Close()
		err = errors.New("deadline")
	}
	if err != nil {
		conn.Close()
		switch {
		case hkErr != nil:
			return nil, hkErr
		case cc:
			return nil, ctx.Err()
		case to:
			return nil, s.handshakeTimeout(e, conn, label, rc.n.Load() > 0, hkSeen.Load())
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("%w: %s@%s refused every key offered (%d key(s): check the user and that the public key is in authorized_keys)",
				ErrAuth, e.user, label, len(signers))
		default:
			return nil, fmt.Errorf("%w: ssh handshake with %s: %v%s", ErrUnreachable, label, err, proxyStderr(conn))
		}
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// handshakeTimeout says how far the handshake got before its deadline.
func (s *Pool) handshakeTimeout(e endpoint, conn net.Conn, label string, spoke, keyChecked bool) error {
	t := s.o.ConnectTimeout
	switch {
	case !spoke:
		return fmt.Errorf("%w: %s accepted the connection but sent no SSH banner within %s: check that sshd listens there, and that it is not another service or a proxy that holds connections%s",
			ErrTimeout, label, t, proxyStderr(conn))
	case !keyChecked:
		return fmt.Errorf("%w: %s did not finish the SSH key exchange within %s: check the network to it and its sshd's load (MaxStartups)%s",
			ErrTimeout, label, t, proxyStderr(conn))
	default:
		return fmt.Errorf("%w: %s did not finish logging in %s within %s (its host key was verified): check its sshd's log and its load",
			ErrTimeout, label, e.user, t)
	}
}

// strictNote is added to an unknown-host error when ~/.ssh/config would
// have OpenSSH skip or loosen the check for alias: mtlsctl never does.
func (s *Pool) strictNote(alias string) string {
	v := strings.ToLower(s.cfg(alias, "StrictHostKeyChecking"))
	if v == "no" || v == "off" || v == "accept-new" {
		return fmt.Sprintf(" (%s sets StrictHostKeyChecking %s for this host; mtlsctl ignores it and checks every host key)", s.cfgPath, v)
	}
	if strings.Contains(s.cfg(alias, "UserKnownHostsFile"), "/dev/null") {
		return fmt.Sprintf(" (%s sets UserKnownHostsFile /dev/null for this host; mtlsctl ignores it and checks every host key)", s.cfgPath)
	}
	return ""
}
