package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/internal/app"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
)

// lcCheckHealth asserts the shape every healthy cluster has: per datacenter a
// leader and every server a voter and alive, every node alive, one gossip
// key held by every member of every pool, every agent serving its issued
// certificate.
func lcCheckHealth(t *testing.T, h *consulapi.Health, servers map[string]int, nodes int) {
	t.Helper()
	for dc, want := range servers {
		d := h.DC(dc)
		if d == nil {
			t.Fatalf("no datacenter %s in %+v", dc, h)
		}
		if d.Leader == "" {
			t.Errorf("%s: no leader", dc)
		}
		alive, voters, ok := d.Quorum()
		if voters != want || alive != want || !ok {
			t.Errorf("%s: %d of %d voters alive (quorum %v), want %d", dc, alive, voters, ok, want)
		}
	}
	if len(h.Nodes) != nodes {
		t.Errorf("%d nodes in the report, want %d", len(h.Nodes), nodes)
	}
	for _, n := range h.Nodes {
		if n.Member != consulapi.MemberAlive {
			t.Errorf("%s is %q", n.Node, n.Member)
		}
		if n.Cert == nil || !n.Cert.Match || !n.Cert.Verified {
			t.Errorf("%s: agent does not serve the issued certificate: %+v", n.Node, n.Cert)
		}
	}
	if len(h.Keyring) == 0 {
		t.Errorf("no keyring pools (%s)", h.KeyringError)
	}
	for _, p := range h.Keyring {
		if len(p.Keys) != 1 || p.Keys[0].Nodes != p.NumNodes || p.NumNodes == 0 {
			t.Errorf("keyring pool %s/%v: %+v (want one key on all %d members)", p.Datacenter, p.WAN, p.Keys, p.NumNodes)
		}
	}
}

func TestFiveNodeBootstrap162(t *testing.T) {
	lc := lcStart(t, lcSpec{version: "1.6.2", subnet: "198.18.30.0/24", prefix: "lc", nodes: lcFiveNodes()})
	lcCheckHealth(t, lc.Health, map[string]int{"dc-1": 3}, 5)
	if t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("http only on loopback", func(t *testing.T) {
		// The HTTP API answers through the tunnel (Health used it) but not on
		// the node's own address.
		c, err := net.DialTimeout("tcp", net.JoinHostPort(lc.net.Node("n1").Addr, "8500"), 2*time.Second)
		if err == nil {
			c.Close()
			t.Fatal("port 8500 is reachable on the node's address; it must stay on 127.0.0.1")
		}
	})

	t.Run("https demands a client certificate", func(t *testing.T) {
		nd := lc.net.Node("n4")
		caPEM, err := os.ReadFile(nd.Path("/etc/consul.d/tls/ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		sc, err := lc.net.Dial(nd, "root")
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return sc.DialContext(ctx, "tcp", "127.0.0.1:8503")
			},
			TLSClientConfig: &tls.Config{ServerName: "localhost", RootCAs: pool},
		}}
		resp, err := hc.Get("https://localhost:8503/v1/status/leader")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("HTTPS without a client certificate answered %s", resp.Status)
		}
		t.Logf("refused as expected: %v", err)
	})

	t.Run("live status", func(t *testing.T) {
		h, err := app.LiveStatus(ctx, lc.common, lc.dist)
		if err != nil {
			t.Fatal(err)
		}
		lcCheckHealth(t, h, map[string]int{"dc-1": 3}, 5)
	})

	t.Run("rolling restart leader last", func(t *testing.T) {
		var mu sync.Mutex
		var order []string
		c := lc.dial(transport.Options{Progress: transport.ReporterFunc(func(e transport.Event) {
			if e.Step == "restart" && e.Err == nil && e.Msg == "systemctl restart consul" {
				mu.Lock()
				order = append(order, e.Node)
				mu.Unlock()
			}
		})})
		h, err := c.Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leader := h.DC("dc-1").Leader
		before := map[string]int{}
		for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
			before[n] = lc.servicePID(n)
		}
		start := time.Now()
		if err := c.RollingRestart(ctx, []string{"n1", "n2", "n3", "n4", "n5"}, consulapi.RollOptions{Timeout: time.Minute}); err != nil {
			t.Fatal(err)
		}
		t.Logf("rolling restart of 5 agents took %s, servers in order %v (leader was %s)", time.Since(start).Round(100*time.Millisecond), order[:3], leader)
		if len(order) != 5 || order[2] != leader || slices.Contains(order[:2], leader) {
			t.Errorf("restart order %v: want the 3 servers first with the leader %s third", order, leader)
		}
		for n, pid := range before {
			if now := lc.servicePID(n); now == pid || now == 0 {
				t.Errorf("%s: agent pid %d before, %d after: not restarted", n, pid, now)
			}
		}
		h, err = c.WaitHealthy(ctx, consulapi.Want{})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a server that does not come back stops the roll", func(t *testing.T) {
		c := lc.dial(transport.Options{})
		h, err := c.Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leader := h.DC("dc-1").Leader
		var broken string // the first server the roll will touch
		for _, n := range []string{"n1", "n2", "n3"} {
			if n != leader {
				broken = n
				break
			}
		}
		// The agent "starts" (the stand-in sees a live process) but never
		// answers: the roll must time out on it and touch nothing else.
		if err := lc.net.Node(broken).SetService("consul", testnet.ServiceDef{Command: []string{"sleep", "3600"}}); err != nil {
			t.Fatal(err)
		}
		pids := map[string]int{}
		for _, n := range []string{"n1", "n2", "n3"} {
			pids[n] = lc.servicePID(n)
		}
		start := time.Now()
		err = c.RollingRestart(ctx, []string{"n1", "n2", "n3"}, consulapi.RollOptions{Timeout: 8 * time.Second})
		var re *consulapi.RollError
		if !errors.As(err, &re) {
			t.Fatalf("RollingRestart = %v, want a *RollError", err)
		}
		t.Logf("stopped after %s: %v", time.Since(start).Round(100*time.Millisecond), err)
		if re.Node != broken || !re.Quorum || re.Leader == "" || len(re.Untouched) != 2 || !errors.Is(err, consulapi.ErrNotHealthy) {
			t.Errorf("RollError %+v: want node %s, quorum kept, 2 untouched", re, broken)
		}
		for _, n := range re.Untouched {
			if lc.servicePID(n) != pids[n] {
				t.Errorf("%s was restarted after %s failed", n, broken)
			}
		}
		// Repair: the real agent again, and the cluster heals.
		if err := lc.net.Node(broken).SetService("consul", testnet.ServiceDef{Command: []string{lc.consul, "agent", "-config-dir=/etc/consul.d"}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Restart(ctx, broken); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitHealthy(ctx, consulapi.Want{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a consul setting change is planned and reloaded", func(t *testing.T) {
		inv, err := os.ReadFile(lc.common.Inventory)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(inv), "  reload_command:", "  log_level: DEBUG\n  reload_command:", 1)
		if err := os.WriteFile(lc.common.Inventory, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		pc := lc.common
		pc.JSON, pc.Stdout = true, &buf
		if err := app.Plan(ctx, pc, lc.dist, app.PlanOptions{}); err != nil {
			t.Fatal(err)
		}
		var plan distribute.PlanResult
		if err := json.Unmarshal(buf.Bytes(), &plan); err != nil {
			t.Fatal(err)
		}
		for _, np := range plan.Nodes {
			var changed []string
			for _, f := range np.Files {
				if f.Action != distribute.ActionUnchanged {
					changed = append(changed, f.Path)
				}
			}
			if len(changed) != 1 || changed[0] != "/etc/consul.d/mtlsctl-agent.json" {
				t.Errorf("%s: plan changes %v, want only the agent config", np.Node, changed)
			}
		}
		pids := map[string]int{}
		for _, nd := range lc.net.Nodes() {
			pids[nd.Name] = lc.servicePID(nd.Name)
		}
		if err := app.Apply(ctx, lc.common, lc.dist, app.ApplyOptions{Yes: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := app.VerifyCluster(ctx, lc.common, lc.dist); err != nil {
			t.Fatal(err)
		}
		for _, nd := range lc.net.Nodes() {
			if lc.servicePID(nd.Name) != pids[nd.Name] {
				t.Errorf("%s: agent restarted for a log level change (a reload is enough)", nd.Name)
			}
			if b, _ := os.ReadFile(nd.Path("/etc/consul.d/mtlsctl-agent.json")); !strings.Contains(string(b), `"DEBUG"`) {
				t.Errorf("%s: agent config not updated", nd.Name)
			}
		}
	})

	t.Run("reapply changes nothing", func(t *testing.T) {
		pids := map[string]int{}
		for _, nd := range lc.net.Nodes() {
			pids[nd.Name] = lc.servicePID(nd.Name)
		}
		if err := app.Apply(ctx, lc.common, lc.dist, app.ApplyOptions{Yes: true}); err != nil {
			t.Fatal(err)
		}
		for _, nd := range lc.net.Nodes() {
			if lc.servicePID(nd.Name) != pids[nd.Name] {
				t.Errorf("%s: agent restarted by an apply that changed nothing", nd.Name)
			}
		}
	})
}

func TestTwoDCBootstrap162(t *testing.T) {
	var nodes []lcNode
	for _, dc := range []struct{ name, prefix string }{{"dc-1", "a"}, {"dc-2", "b"}} {
		for i := 1; i <= 3; i++ {
			nodes = append(nodes, lcNode{dc.prefix + string(rune('0'+i)), dc.name, []string{"zookeeper", "cassandra"}})
		}
	}
	lc := lcStart(t, lcSpec{version: "1.6.2", subnet: "198.18.31.0/24", prefix: "lcb", nodes: nodes})
	lcCheckHealth(t, lc.Health, map[string]int{"dc-1": 3, "dc-2": 3}, 6)
	for _, dc := range []string{"dc-1", "dc-2"} {
		d := lc.Health.DC(dc)
		alive := 0
		for _, m := range d.WAN {
			if m.Status == consulapi.MemberAlive {
				alive++
			}
		}
		if alive != 6 {
			t.Errorf("%s sees %d alive WAN members, want 6: %+v", dc, alive, d.WAN)
		}
	}
	// The mesh across datacenters: ZooKeeper and Cassandra nodes reach the
	// other datacenter's through their egress upstreams (datacenter set).
	meshServers(t, lc, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := &lcBuffer{}
	c := lc.common
	c.Stdout = out
	if err := app.Verify(ctx, c, lc.dist, app.VerifyOptions{Hold: 500 * time.Millisecond}); err != nil {
		t.Errorf("verify across two datacenters: %v\n%s", err, out)
	}
}

func TestBootstrap1139TLSBlock(t *testing.T) {
	nodes := []lcNode{
		{"m1", "dc-1", []string{"zookeeper", "cassandra"}},
		{"m2", "dc-1", []string{"zookeeper", "cassandra"}},
		{"m3", "dc-1", []string{"zookeeper", "cassandra"}},
	}
	lc := lcStart(t, lcSpec{version: "1.13.9", subnet: "198.18.32.0/24", prefix: "lcc", nodes: nodes})
	lcCheckHealth(t, lc.Health, map[string]int{"dc-1": 3}, 3)
	cfg, err := os.ReadFile(lc.net.Node("m1").Path("/etc/consul.d/mtlsctl-agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !lcContainsAll(string(cfg), `"tls": {`, `"internal_rpc"`) {
		t.Errorf("1.13.9 config does not use the tls {} stanza:\n%s", cfg)
	}
}

func lcContainsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
