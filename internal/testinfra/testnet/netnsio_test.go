package testnet

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// threadNetns returns the network namespace of every thread of the test
// process.
func threadNetns(t *testing.T) map[string]bool {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, task := range tasks {
		if ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net"); err == nil {
			seen[ns] = true
		}
	}
	return seen
}

func hostOf(t *testing.T, addr string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestNodeSockets checks Listen and DialTimeout inside nodes, PeerEcho, and
// that iptables rules loaded in a node (nat OUTPUT DNAT to a local
// 127.77.x.y listener, filter INPUT DROP) act on that node's traffic only.
func TestNodeSockets(t *testing.T) {
	n := New(t, Options{Nodes: 3})
	n1, n2, n3 := n.Nodes()[0], n.Nodes()[1], n.Nodes()[2]
	rootNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 2 * time.Second

	zk, err := n2.PeerEcho(n2.Addr + ":2181")
	if err != nil {
		t.Fatal(err)
	}
	egress, err := n1.PeerEcho("127.77.0.1:10700")
	if err != nil {
		t.Fatal(err)
	}
	local, err := n2.PeerEcho("127.0.0.1:2182")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("listen and dial inside nodes", func(t *testing.T) {
		peer, err := n1.EchoPeer(zk.Addr(), timeout)
		if err != nil {
			t.Fatal(err)
		}
		if hostOf(t, peer) != n1.Addr || zk.Count() != 1 || zk.Peers()[0] != peer {
			t.Errorf("n1 -> n2: peer %q, server saw %v; want one connection from %s", peer, zk.Peers(), n1.Addr)
		}
		// 127.0.0.1 in n2 is n2's own loopback.
		if peer, err := n2.EchoPeer(local.Addr(), timeout); err != nil || hostOf(t, peer) != "127.0.0.1" {
			t.Errorf("n2 -> its 127.0.0.1: %q, %v", peer, err)
		}
		if !slices.Equal(local.PeerHosts(), []string{"127.0.0.1"}) {
			t.Errorf("local echo saw %v", local.PeerHosts())
		}
		if _, err := n3.DialTimeout("tcp", local.Addr(), timeout); err == nil {
			t.Error("n3 reached n2's loopback listener")
		}
		// The admin (root namespace) reaches a node's listener on its address.
		c, err := net.DialTimeout("tcp", zk.Addr(), timeout)
		if err != nil {
			t.Fatal(err)
		}
		if peer, err := ReadPeer(c, timeout); err != nil || hostOf(t, peer) != n.AdminAddr() {
			t.Errorf("admin -> n2: %q, %v", peer, err)
		}
		c.Close()
	})

	t.Run("threads stay in the root namespace", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nd := n.Nodes()[i%3]
				ln, err := nd.Listen("tcp", nd.Addr+":0")
				if err != nil {
					t.Error(err)
					return
				}
				ln.Close()
			}()
		}
		wg.Wait()
		if got := threadNetns(t); len(got) != 1 || !got[rootNS] {
			t.Errorf("threads of the test process are in %v, want only %s", got, rootNS)
		}
		// A node's address is not local to the root namespace.
		if ln, err := net.Listen("tcp", n1.Addr+":0"); err == nil {
			ln.Close()
			t.Error("listened on a node address from the root namespace")
		} else if !errors.Is(err, syscall.EADDRNOTAVAIL) {
			t.Errorf("listen on a node address from the root namespace: %v, want EADDRNOTAVAIL", err)
		}
	})

	t.Run("bad arguments", func(t *testing.T) {
		for _, tc := range [][2]string{{"tcp", "localhost:1"}, {"udp", "127.0.0.1:1"}, {"tcp", "127.0.0.1"}} {
			if ln, err := n1.Listen(tc[0], tc[1]); err == nil {
				ln.Close()
				t.Errorf("Listen(%q, %q) succeeded", tc[0], tc[1])
			}
			if c, err := n1.DialTimeout(tc[0], tc[1], timeout); err == nil {
				c.Close()
				t.Errorf("DialTimeout(%q, %q) succeeded", tc[0], tc[1])
			}
		}
	})

	t.Run("nat OUTPUT DNAT redirects to a local listener", func(t *testing.T) {
		rules := "*nat\n:MTLSCTL-EGRESS - [0:0]\n-A MTLSCTL-EGRESS -d " + n2.Addr + "/32 -p tcp -m tcp --dport 2181 -m comment --comment zk-2181 -j DNAT --to-destination 127.77.0.1:10700\nCOMMIT\n"
		mustSSH(t, n, n1, "root", "iptables-restore --noflush <<'EOF'\n"+rules+"EOF\niptables -t nat -I OUTPUT 1 -j MTLSCTL-EGRESS")
		before := zk.Count()
		peer, err := n1.EchoPeer(zk.Addr(), timeout)
		if err != nil {
			t.Fatal(err)
		}
		// The source address was chosen before the DNAT: n1's own.
		if egress.Count() != 1 || zk.Count() != before || hostOf(t, peer) != n1.Addr {
			t.Errorf("n1 -> %s: peer %q; local listener saw %v, n2 saw %d new; want the local listener", zk.Addr(), peer, egress.Peers(), zk.Count()-before)
		}
		// Other ports and other nodes are untouched.
		if peer, err := n3.EchoPeer(zk.Addr(), timeout); err != nil || hostOf(t, peer) != n3.Addr || zk.Count() != before+1 {
			t.Errorf("n3 -> n2: %q, %v; n2 count %d", peer, err, zk.Count())
		}
		if out, err := n1.Exec(t.Context(), "iptables", "-t", "nat", "-S", "MTLSCTL-EGRESS"); err != nil || !strings.Contains(string(out), "127.77.0.1:10700") {
			t.Errorf("iptables -S via Exec: %q, %v", out, err)
		}
		if out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput(); err == nil && strings.Contains(string(out), "MTLSCTL-EGRESS") {
			t.Errorf("the host's nat table has the node's chain:\n%s", out)
		}
		mustSSH(t, n, n1, "root", "iptables -t nat -D OUTPUT -j MTLSCTL-EGRESS && iptables -t nat -F MTLSCTL-EGRESS && iptables -t nat -X MTLSCTL-EGRESS")
		if peer, err := n1.EchoPeer(zk.Addr(), timeout); err != nil || zk.Count() != before+2 {
			t.Errorf("after unload: %q, %v; n2 count %d", peer, err, zk.Count())
		}
	})

	t.Run("filter INPUT DROP spares loopback", func(t *testing.T) {
		if _, err := n2.Exec(t.Context(), "iptables", "-A", "INPUT", "!", "-i", "lo", "-p", "tcp", "--dport", "2181", "-j", "DROP"); err != nil {
			t.Fatal(err)
		}
		if c, err := n3.DialTimeout("tcp", zk.Addr(), 200*time.Millisecond); err == nil {
			c.Close()
			t.Error("n3 reached n2:2181 through DROP")
		}
		// n2's own traffic to its address goes over lo.
		if peer, err := n2.EchoPeer(zk.Addr(), timeout); err != nil || hostOf(t, peer) != n2.Addr {
			t.Errorf("n2 -> itself: %q, %v", peer, err)
		}
	})

	t.Run("Close closes sockets", func(t *testing.T) {
		ln, err := n3.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
		if err := zk.Close(); err != nil {
			t.Errorf("PeerEcho.Close after Net.Close: %v", err)
		}
		if _, err := n1.Listen("tcp", "127.0.0.1:0"); err == nil {
			t.Error("Listen after Close succeeded")
		}
	})
}
