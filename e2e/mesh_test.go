// Mesh tests: the components' own traffic between nodes goes through
// Consul Connect proxies (real `consul connect proxy` processes started from
// the unit files mtlsctl renders), transparently (iptables nat OUTPUT in
// each node's own network namespace), with least privilege (intentions)
// and a loaded firewall. Stand-in component servers answer with the peer
// address they saw, so a test can tell a connection the ingress proxy
// delivered (peer 127.0.0.1) from a direct one.

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/internal/app"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
)

// meshPorts are the component ports the mesh carries, per component (the
// spec's table, written out independently of consulcfg's).
var meshPorts = map[string][]int{
	"zookeeper":         {2181, 2888, 3888},
	"cassandra":         {9042, 9160},
	"openldap":          {10389},
	"postgres":          {5432, 8084},
	"qpid":              {5672, 8083},
	"message-processor": {8082, 4528},
	"router":            {8081, 4527},
}

// meshServers starts a stand-in server on every meshed component port of
// every node (listening on all addresses, as real components do).
func meshServers(t *testing.T, lc *lcCluster, nodes []lcNode) map[string]*testnet.PeerEcho {
	t.Helper()
	out := map[string]*testnet.PeerEcho{}
	for _, n := range nodes {
		for _, comp := range n.components {
			for _, p := range meshPorts[comp] {
				e, err := lc.net.Node(n.name).PeerEcho("0.0.0.0:" + strconv.Itoa(p))
				if err != nil {
					t.Fatalf("%s: stand-in server on %d: %v", n.name, p, err)
				}
				t.Cleanup(func() { e.Close() })
				out[n.name+":"+strconv.Itoa(p)] = e
			}
		}
	}
	return out
}

func peerHost(peer string) string {
	h, _, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimSpace(peer), "peer="))
	if err != nil {
		return peer
	}
	return h
}

// meshCall connects from node src to addr (its component port) and returns
// the peer the stand-in server saw, or an error.
func meshCall(lc *lcCluster, src, addr string) (string, error) {
	return lc.net.Node(src).EchoPeer(addr, 3*time.Second)
}

func TestMesh162(t *testing.T) {
	nodes := lcFiveNodes()
	lc := lcStart(t, lcSpec{version: "1.6.2", subnet: "198.18.70.0/24", prefix: "ms", nodes: nodes})
	lcCheckHealth(t, lc.Health, map[string]int{"dc-1": 3}, 5)
	if t.Failed() {
		return
	}
	servers := meshServers(t, lc, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	addr := func(node string, port int) string {
		return net.JoinHostPort(lc.net.Node(node).Addr, strconv.Itoa(port))
	}

	t.Run("a local user gets nothing from the agents", func(t *testing.T) {
		for _, n := range []string{"n1", "n4"} {
			lcLocalUserDenied(t, ctx, lc, n)
		}
	})

	t.Run("proxies and firewall are up", func(t *testing.T) {
		for _, n := range lc.net.Nodes() {
			out, err := n.Exec(ctx, "sh", "-c", "iptables -S; echo ---; iptables -t nat -S OUTPUT; iptables -t nat -S "+consulcfg.EgressChain)
			if err != nil {
				t.Fatalf("%s: iptables: %v\n%s", n.Name, err, out)
			}
			for _, want := range []string{"-A INPUT -j " + consulcfg.FirewallChain, "-A OUTPUT -j " + consulcfg.EgressChain, "DNAT"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("%s: rules lack %q:\n%s", n.Name, want, out)
				}
			}
			if !n.UnitEnabled(consulcfg.FirewallUnit) {
				t.Errorf("%s: %s is not enabled: the rules would not come back after a reboot", n.Name, consulcfg.FirewallUnit)
			}
			units, _ := filepath.Glob(n.Path(filepath.Join(lc.net.UnitDir(), "mtlsctl-proxy-*.service")))
			if len(units) == 0 {
				t.Errorf("%s: no proxy unit in %s", n.Name, lc.net.UnitDir())
			}
			for _, u := range units {
				if pid, ok := n.UnitPID(filepath.Base(u)); !ok || pid == 0 {
					t.Errorf("%s: %s is not running", n.Name, filepath.Base(u))
				}
			}
		}
	})

	t.Run("allowed path goes through the mesh", func(t *testing.T) {
		// Router (n2) to ZooKeeper on n1: its usual connection, unchanged.
		peer, err := meshCall(lc, "n2", addr("n1", 2181))
		if err != nil {
			t.Fatalf("n2 -> n1:2181: %v", err)
		}
		if h := peerHost(peer); h != "127.0.0.1" {
			t.Errorf("n1's ZooKeeper saw %q, want 127.0.0.1 (the ingress proxy), not the router's address", peer)
		}
		// Management Server (n1) to Postgres (n4), Postgres to Postgres (n4 -> n5).
		for _, c := range [][3]string{{"n1", "n4", "5432"}, {"n4", "n5", "5432"}, {"n4", "n2", "9042"}, {"n1", "n3", "8082"}} {
			port, _ := strconv.Atoi(c[2])
			peer, err := meshCall(lc, c[0], addr(c[1], port))
			if err != nil || peerHost(peer) != "127.0.0.1" {
				t.Errorf("%s -> %s:%s: peer %q, err %v; want peer 127.0.0.1", c[0], c[1], c[2], peer, err)
			}
		}
	})

	t.Run("denied path is refused", func(t *testing.T) {
		// Router -> Postgres is not in Apigee's table. (Consul's built-in
		// proxy opens its connection to the local component as soon as it
		// accepts, before the TLS handshake, so the component may see a
		// connection from 127.0.0.1; no byte crosses it.)
		peer, err := meshCall(lc, "n2", addr("n4", 5432))
		if err == nil {
			t.Errorf("router n2 -> postgres n4:5432 answered %q; want it refused", peer)
		}
	})

	t.Run("outside host gets nothing", func(t *testing.T) {
		// The admin side of the test network is not a cluster member.
		admin := lc.net.AdminAddr()
		// Nothing else talks to Cassandra on n3 meanwhile: no health check
		// may reach it (the proxy dials its component for every
		// connection it accepts, so a TCP check would, every interval).
		quiet := servers["n3:9042"].Count()
		defer func() {
			if got := servers["n3:9042"].Count(); got != quiet {
				t.Errorf("n3's Cassandra got %d connection(s) while nobody used it (health checks through the proxy?)", got-quiet)
			}
		}()
		for _, a := range []string{addr("n1", 2181), addr("n4", 5432)} {
			c, err := net.DialTimeout("tcp", a, 2*time.Second)
			if err == nil {
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 64)
				k, _ := c.Read(buf)
				c.Close()
				if k > 0 {
					t.Errorf("outside host reached %s directly and got %q", a, buf[:k])
				}
			}
		}
		for _, k := range []string{"n1:2181", "n4:5432"} {
			for _, h := range servers[k].PeerHosts() {
				if h == admin {
					t.Errorf("%s accepted a plaintext connection from outside the cluster (%s)", k, h)
				}
			}
		}
		// A member speaking plaintext to a proxy port (no client
		// certificate) gets no component data back.
		ports := lcProxyPorts(t, lc, "n1")
		c, err := lc.net.Node("n5").DialTimeout("tcp", net.JoinHostPort(lc.net.Node("n1").Addr, strconv.Itoa(ports["zk-2181"])), 3*time.Second)
		if err != nil {
			t.Fatalf("dial the proxy port: %v", err)
		}
		c.Write([]byte("hello\n"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 256)
		k, _ := c.Read(buf)
		c.Close()
		if strings.Contains(string(buf[:k]), "peer=") {
			t.Errorf("a plaintext client without a certificate reached ZooKeeper through the proxy port: %q", buf[:k])
		}
	})

	t.Run("verify passes, then names a stopped proxy, and apply repairs it", func(t *testing.T) {
		out := &lcBuffer{}
		c := lc.common
		c.Stdout, c.JSON = out, true
		if err := app.Verify(ctx, c, lc.dist, app.VerifyOptions{Hold: 500 * time.Millisecond}); err != nil {
			t.Fatalf("verify on a healthy mesh: %v\n%s", err, out)
		}
		var res app.VerifyResult
		if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
			t.Fatalf("verify -o json: %v\n%s", err, out)
		}
		allowed, denied := 0, 0
		for _, n := range res.Nodes {
			allowed += n.Allowed
			denied += n.Denied
		}
		t.Logf("verify: %d allowed paths carried, %d denied samples refused", allowed, denied)
		if !res.OK || allowed == 0 || denied == 0 {
			t.Errorf("verify result: ok=%v allowed=%d denied=%d", res.OK, allowed, denied)
		}

		unit := "mtlsctl-proxy-zk-2181-" + strings.ReplaceAll(lc.net.Node("n1").Addr, ".", "-") + ".service"
		if o, err := lc.net.Node("n1").Exec(ctx, "systemctl", "stop", unit); err != nil {
			t.Fatalf("stop %s: %v %s", unit, err, o)
		}
		text := &lcBuffer{}
		c = lc.common
		c.Stdout = text
		err := app.Verify(ctx, c, lc.dist, app.VerifyOptions{Hold: 500 * time.Millisecond})
		if err == nil || !strings.Contains(text.String(), strings.TrimSuffix(strings.TrimPrefix(unit, "mtlsctl-proxy-"), ".service")) {
			t.Errorf("verify with %s stopped: err %v; output does not name the broken path:\n%s", unit, err, text)
		}
		// The stopped proxy is drift: plan shows it, apply starts it.
		plan := &lcBuffer{}
		c.Stdout = plan
		if err := app.Plan(ctx, c, lc.dist, app.PlanOptions{}); err != nil {
			t.Fatalf("plan: %v", err)
		}
		if !strings.Contains(plan.String(), "start    "+unit) {
			t.Errorf("plan does not show the stopped proxy:\n%s", plan)
		}
		if err := app.Apply(ctx, lc.common, lc.dist, app.ApplyOptions{Yes: true}); err != nil {
			t.Fatalf("apply: %v", err)
		}
		if err := app.Verify(ctx, lc.common, lc.dist, app.VerifyOptions{Hold: 500 * time.Millisecond}); err != nil {
			t.Errorf("verify after apply: %v", err)
		}
		// Nothing left to do.
		if err := app.Plan(ctx, lc.common, lc.dist, app.PlanOptions{DetailedExit: true}); err != nil {
			t.Errorf("plan after apply: %v (want no changes)", err)
		}
	})

	t.Run("a changed registration restarts only its proxies", func(t *testing.T) {
		// Moving the Cassandra range changes the Cassandra sidecars'
		// registrations (their ports) and nothing else's: the egress
		// upstreams name services, not ports.
		pids := lcProxyPIDs(lc)
		inv, err := os.ReadFile(lc.common.Inventory)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(inv), "mesh:\n", "ports:\n  cassandra: 10150-10199\nmesh:\n", 1)
		if err := os.WriteFile(lc.common.Inventory, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := app.Generate(lc.common, app.GenerateOptions{}); err != nil {
			t.Fatalf("generate: %v", err)
		}
		plan := &lcBuffer{}
		c := lc.common
		c.Stdout = plan
		if err := app.Plan(ctx, c, lc.dist, app.PlanOptions{}); err != nil {
			t.Fatalf("plan: %v", err)
		}
		if !strings.Contains(plan.String(), "restart  mtlsctl-proxy-cassandra-9042-") || strings.Contains(plan.String(), "restart  mtlsctl-proxy-zk-") {
			t.Errorf("plan does not restart exactly the Cassandra proxies:\n%s", plan)
		}
		if err := app.Apply(ctx, lc.common, lc.dist, app.ApplyOptions{Yes: true}); err != nil {
			t.Fatalf("apply: %v", err)
		}
		for key, old := range pids {
			node, unit, _ := strings.Cut(key, "/")
			now, _ := lc.net.Node(node).UnitPID(unit)
			cassandra := strings.HasPrefix(unit, "mtlsctl-proxy-cassandra-")
			switch {
			case cassandra && now == old:
				t.Errorf("%s: %s kept pid %d; its registration changed, it must restart", node, unit, old)
			case !cassandra && now != old:
				t.Errorf("%s: %s restarted (pid %d -> %d) although nothing of it changed", node, unit, old, now)
			}
		}
		if err := app.Verify(ctx, lc.common, lc.dist, app.VerifyOptions{Hold: 500 * time.Millisecond}); err != nil {
			t.Errorf("verify after the port change: %v", err)
		}
		peer, err := meshCall(lc, "n4", addr("n3", 9042))
		if err != nil || peerHost(peer) != "127.0.0.1" {
			t.Errorf("postgres n4 -> cassandra n3:9042 after the move: %q %v", peer, err)
		}
	})

	t.Run("intentions are exactly mtlsctl's", func(t *testing.T) {
		cl := lc.dial(transport.Options{})
		client, err := cl.API(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		ixns, _, err := client.Connect().Intentions(nil)
		if err != nil {
			t.Fatal(err)
		}
		var deny bool
		for _, i := range ixns {
			if i.Meta[consulcfg.IntentionMetaKey] != "ms" {
				t.Errorf("intention %s -> %s has no mtlsctl mark", i.SourceName, i.DestinationName)
			}
			if i.SourceName == "*" && i.DestinationName == "*" && i.Action == api.IntentionActionDeny {
				deny = true
			}
		}
		if !deny {
			t.Error("no default deny (* -> * deny)")
		}
		t.Logf("%d intentions", len(ixns))

		// Drift: one of mtlsctl's allows deleted by hand, and an operator's
		// own intention added. plan shows the first, apply restores it,
		// and the operator's stays (also through uninstall, below).
		var victim *api.Intention
		for _, i := range ixns {
			if i.Action == api.IntentionActionAllow {
				victim = i
				break
			}
		}
		if _, err := client.Connect().IntentionDelete(victim.ID, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := client.Connect().IntentionCreate(&api.Intention{SourceName: "operator-tool", DestinationName: "operator-db",
			Action: api.IntentionActionAllow, Description: "not mtlsctl's"}, nil); err != nil {
			t.Fatal(err)
		}
		plan := &lcBuffer{}
		c := lc.common
		c.Stdout = plan
		if err := app.Plan(ctx, c, lc.dist, app.PlanOptions{}); err != nil {
			t.Fatalf("plan: %v", err)
		}
		if want := "+ allow " + victim.SourceName + " -> " + victim.DestinationName; !strings.Contains(plan.String(), want) {
			t.Errorf("plan does not show %q:\n%s", want, plan)
		}
		if err := app.Apply(ctx, lc.common, lc.dist, app.ApplyOptions{Yes: true}); err != nil {
			t.Fatalf("apply: %v", err)
		}
		after, _, err := client.Connect().Intentions(nil)
		if err != nil {
			t.Fatal(err)
		}
		var back, foreign bool
		for _, i := range after {
			back = back || (i.SourceName == victim.SourceName && i.DestinationName == victim.DestinationName && i.Action == victim.Action)
			foreign = foreign || i.SourceName == "operator-tool"
		}
		if !back || !foreign || len(after) != len(ixns)+1 {
			t.Errorf("after apply: restored %v, operator's kept %v, %d intentions (want %d)", back, foreign, len(after), len(ixns)+1)
		}
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		if err := app.Uninstall(ctx, lc.common, lc.dist, app.UninstallOptions{Yes: true}); err != nil {
			t.Fatalf("uninstall: %v", err)
		}
		for _, n := range lc.net.Nodes() {
			out, err := n.Exec(ctx, "sh", "-c", "iptables -S; iptables -t nat -S OUTPUT; iptables -t nat -S")
			if err != nil {
				t.Fatalf("%s: %v", n.Name, err)
			}
			if strings.Contains(string(out), "MTLSCTL") {
				t.Errorf("%s: mtlsctl rules remain:\n%s", n.Name, out)
			}
			units, _ := filepath.Glob(n.Path(filepath.Join(lc.net.UnitDir(), "mtlsctl-*")))
			if len(units) > 0 {
				t.Errorf("%s: units remain: %v", n.Name, units)
			}
			if n.UnitEnabled(consulcfg.FirewallUnit) {
				t.Errorf("%s: %s is still enabled", n.Name, consulcfg.FirewallUnit)
			}
			// The node state directory is a mountpoint in the test network,
			// so it stays, empty.
			if left, _ := os.ReadDir(n.Path("/var/lib/mtlsctl")); len(left) > 0 {
				t.Errorf("%s: node state remains: %v", n.Name, left)
			}
			for _, f := range []string{"/etc/consul.d/mtlsctl-agent.json", "/etc/consul.d/mtlsctl-services.json", "/etc/consul.d/tls/agent-key.pem"} {
				if _, err := os.Stat(n.Path(f)); !os.IsNotExist(err) {
					t.Errorf("%s: %s remains", n.Name, f)
				}
			}
		}
		cl := lc.dial(transport.Options{})
		client, err := cl.API(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		ixns, _, err := client.Connect().Intentions(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(ixns) != 1 || ixns[0].SourceName != "operator-tool" {
			t.Errorf("after uninstall: %d intentions, want only the operator's own", len(ixns))
		}
	})
}

// lcProxyPorts reads a node's port report (ports.json in its node state
// directory) into class -> proxy port.
func lcProxyPorts(t *testing.T, lc *lcCluster, node string) map[string]int {
	t.Helper()
	var m consulcfg.Mesh
	mb, err := os.ReadFile(lc.net.Node(node).Path("/var/lib/mtlsctl/manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Mesh *consulcfg.Mesh `json:"mesh"`
	}
	if err := json.Unmarshal(mb, &man); err != nil || man.Mesh == nil {
		t.Fatalf("manifest: %v (%s)", err, mb)
	}
	m = *man.Mesh
	out := map[string]int{}
	for _, p := range m.Proxies {
		_, port, _ := net.SplitHostPort(p.Listen)
		out[p.Class], _ = strconv.Atoi(port)
	}
	return out
}

// lcProxyPIDs maps node/unit to the PID of every proxy unit.
func lcProxyPIDs(lc *lcCluster) map[string]int {
	out := map[string]int{}
	for _, n := range lc.net.Nodes() {
		units, _ := filepath.Glob(n.UnitFile("mtlsctl-proxy-*.service"))
		for _, u := range units {
			pid, _ := n.UnitPID(filepath.Base(u))
			out[n.Name+"/"+filepath.Base(u)] = pid
		}
	}
	return out
}

// meshProbe connects from src to dst every 100 ms and records failures.
type meshProbe struct {
	mu       sync.Mutex
	ops      int
	failures []string
	stop     chan struct{}
	done     chan struct{}
}

func startMeshProbe(lc *lcCluster, src, dst string) *meshProbe {
	p := &meshProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			peer, err := meshCall(lc, src, dst)
			p.mu.Lock()
			p.ops++
			if err != nil || peerHost(peer) != "127.0.0.1" {
				p.failures = append(p.failures, fmt.Sprintf("%s %s -> %s: peer %q, %v", time.Now().Format("15:04:05.000"), src, dst, peer, err))
			}
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *meshProbe) finish() (int, []string) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ops, p.failures
}
