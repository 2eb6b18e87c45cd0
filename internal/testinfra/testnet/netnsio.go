package testnet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs f on an OS thread that has joined the node's network
// namespace. The work happens on a fresh goroutine locked to its thread:
// once f returns, the thread goes back to its original namespace and is
// unlocked; if going back fails, it stays locked, and Go terminates it when
// the goroutine exits, so no other goroutine ever runs in the wrong
// namespace. Sockets created by f stay in the node's namespace.
func (nd *Node) inNetns(f func() error) error {
	target, err := os.Open(filepath.Join(netnsDir, nd.NS))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNodeDown, nd.Name, err)
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			// A failed setns leaves the thread where it was.
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter network namespace %s: %w", nd.NS, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with this goroutine.
			done <- errors.Join(ferr, fmt.Errorf("leave network namespace %s (thread discarded): %w", nd.NS, err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// checkSocketAddr accepts a TCP network and an address whose host is empty
// or an IP literal: resolving a name could happen on another thread, outside
// the node's namespace.
func checkSocketAddr(network, addr string) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return fmt.Errorf("network %q: only tcp, tcp4 and tcp6 are supported", network)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("address %q: the host must be an IP literal (names are not resolved inside a node)", addr)
		}
	}
	return nil
}

// track remembers c so that Close closes it: a socket open in the test
// process would otherwise keep the node's namespace alive.
func (nd *Node) track(c io.Closer) {
	nd.mu.Lock()
	nd.closers = append(nd.closers, c)
	nd.mu.Unlock()
}

// Listen opens a listener inside the node's network namespace, in the test
// process (no extra process): it stands in for a component's server on the
// node. The host of addr must be empty or an IP literal. Close closes the
// listener at the latest.
func (nd *Node) Listen(network, addr string) (net.Listener, error) {
	if err := checkSocketAddr(network, addr); err != nil {
		return nil, fmt.Errorf("testnet: node %s: listen: %w", nd.Name, err)
	}
	var ln net.Listener
	err := nd.inNetns(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testnet: node %s: listen %s %s: %w", nd.Name, network, addr, err)
	}
	nd.track(ln)
	return ln, nil
}

// DialTimeout connects from inside the node's network namespace, in the test
// process: it stands in for a component's client on the node. Its traffic
// is locally generated in the node, so it goes through the node's nat OUTPUT
// chain as a component's would. The host of addr must be an IP literal.
// Close closes the connection at the latest.
func (nd *Node) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	if err := checkSocketAddr(network, addr); err != nil {
		return nil, fmt.Errorf("testnet: node %s: dial: %w", nd.Name, err)
	}
	var c net.Conn
	err := nd.inNetns(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testnet: node %s: %w", nd.Name, err)
	}
	nd.track(c)
	return c, nil
}

// PeerEcho is a stand-in component server: on every connection it writes
// "peer=<remote address>\n" at once and closes, and it records the remote
// addresses it saw. Tests use it to see who a proxy delivered from (an
// ingress proxy delivers from 127.0.0.1).
type PeerEcho struct {
	ln   net.Listener
	done chan struct{}

	mu    sync.Mutex
	peers []string
}

// ServePeerEcho serves ln as a PeerEcho until Close (or until ln is closed).
func ServePeerEcho(ln net.Listener) *PeerEcho {
	e := &PeerEcho{ln: ln, done: make(chan struct{})}
	go e.serve()
	return e
}

// PeerEcho listens on addr (TCP, host empty or an IP literal) inside the
// node and serves a PeerEcho there.
func (nd *Node) PeerEcho(addr string) (*PeerEcho, error) {
	ln, err := nd.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return ServePeerEcho(ln), nil
}

func (e *PeerEcho) serve() {
	defer close(e.done)
	for {
		c, err := e.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		peer := c.RemoteAddr().String()
		e.mu.Lock()
		e.peers = append(e.peers, peer)
		e.mu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.WriteString(c, "peer="+peer+"\n")
		_ = c.Close()
	}
}

// Addr returns the listening address.
func (e *PeerEcho) Addr() string { return e.ln.Addr().String() }

// Peers returns the remote addresses (ip:port) of the connections served so
// far, oldest first.
func (e *PeerEcho) Peers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.peers...)
}

// PeerHosts returns the remote IP addresses of the connections served so
// far, oldest first.
func (e *PeerEcho) PeerHosts() []string {
	peers := e.Peers()
	for i, p := range peers {
		if h, _, err := net.SplitHostPort(p); err == nil {
			peers[i] = h
		}
	}
	return peers
}

// Count returns how many connections were served.
func (e *PeerEcho) Count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.peers)
}

// Close stops the server and waits for its loop to end.
func (e *PeerEcho) Close() error {
	err := e.ln.Close()
	<-e.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// ReadPeer reads a PeerEcho greeting from c, waiting at most timeout, and
// returns the remote address the server reported (ip:port).
func ReadPeer(c net.Conn, timeout time.Duration) (string, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read peer greeting: %w (got %q)", err, line)
	}
	peer, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "peer=")
	if !ok {
		return "", fmt.Errorf("not a peer greeting: %q", line)
	}
	return peer, nil
}

// EchoPeer connects from inside the node to addr (a PeerEcho, possibly
// behind proxies or NAT), and returns the remote address the server
// reported. timeout bounds the connect and, again, the read.
func (nd *Node) EchoPeer(addr string, timeout time.Duration) (string, error) {
	c, err := nd.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	peer, err := ReadPeer(c, timeout)
	if err != nil {
		return "", fmt.Errorf("testnet: node %s: %s: %w", nd.Name, addr, err)
	}
	return peer, nil
}
