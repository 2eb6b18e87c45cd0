package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// The sandbox's nodes get the mesh's units and firewall files, and
// uninstall removes every file mtlsctl put there, stops and disables the
// proxies, unloads the firewall and removes the node state.
func TestUninstallSandbox(t *testing.T) {
	c, d, sb := sandboxClusterWith(t)
	ctx := context.Background()
	if err := Apply(ctx, c, d, ApplyOptions{Yes: true}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	srv := sb.servers[0]
	units, _ := filepath.Glob(srv.Path("/etc/systemd/system/mtlsctl-proxy-*.service"))
	if len(units) == 0 {
		t.Fatal("no proxy unit on the first node after apply")
	}
	calls := strings.Join(srv.Calls(), "\n")
	for _, want := range []string{"systemctl daemon-reload", "systemctl enable mtlsctl-proxy-", "systemctl start mtlsctl-proxy-", "iptables-restore --noflush"} {
		if !strings.Contains(calls, want) {
			t.Errorf("apply did not run %q on the node; calls:\n%s", want, calls)
		}
	}
	out := &bytes.Buffer{}
	c.Stdout = out
	if err := Uninstall(ctx, c, d, UninstallOptions{Yes: true}); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	for _, want := range []string{"  - /etc/consul.d/mtlsctl-agent.json (config)", "mesh: remove ", "mesh: firewall unload", "remove the node state directory"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("uninstall plan lacks %q:\n%s", want, out)
		}
	}
	for _, s := range sb.servers {
		for _, p := range []string{"/etc/consul.d/mtlsctl-agent.json", "/etc/consul.d/tls/agent-key.pem", "/var/lib/mtlsctl"} {
			if _, err := os.Stat(s.Path(p)); !os.IsNotExist(err) {
				t.Errorf("%s remains after uninstall (%v)", p, err)
			}
		}
		if left, _ := filepath.Glob(s.Path("/etc/systemd/system/mtlsctl-*")); len(left) > 0 {
			t.Errorf("units remain: %v", left)
		}
		calls := strings.Join(s.Calls(), "\n")
		// apply only checks and adds jumps (-C, -I); only unload deletes them.
		if !strings.Contains(calls, "systemctl disable --now mtlsctl-proxy-") || !strings.Contains(calls, "iptables -w -t nat -D OUTPUT -j MTLSCTL-EGRESS") ||
			!strings.Contains(calls, "iptables -w -t filter -D INPUT -j MTLSCTL-INPUT") {
			t.Errorf("uninstall did not stop the proxies or unload the firewall; calls:\n%s", calls)
		}
	}
	// A second uninstall has nothing to do.
	out.Reset()
	if err := Uninstall(ctx, c, d, UninstallOptions{Yes: true}); err != nil {
		t.Fatalf("second uninstall: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "0 of 5 node(s) have changes") {
		t.Errorf("second uninstall:\n%s", out)
	}
}

func TestMeshPathsAndJudge(t *testing.T) {
	data, err := os.ReadFile("../../examples/edge-5.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := inventory.Parse("edge-5.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := inventory.AssignPorts(topo, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bundles []consulcfg.Bundle
	for _, n := range topo.Nodes {
		b := consulcfg.Bundle{Node: n.Name}
		b.Mesh = &consulcfg.Mesh{}
		bundles = append(bundles, b)
	}
	want, err := consulcfg.Intentions(topo, ports)
	if err != nil {
		t.Fatal(err)
	}
	// Fill the bundles' proxies the way the renderer names them.
	for i, n := range topo.Nodes {
		dashed := strings.ReplaceAll(n.Address, ".", "-")
		bundles[i].Mesh.Proxies = append(bundles[i].Mesh.Proxies, consulcfg.Proxy{Service: "egress-" + dashed, Class: "egress"})
		if n.Has(inventory.ZooKeeper) {
			bundles[i].Mesh.Proxies = append(bundles[i].Mesh.Proxies, consulcfg.Proxy{Service: "zk-2181-" + dashed, Class: "zk-2181", Ingress: true, Target: "127.0.0.1:2181"})
		}
		if n.Has(inventory.Postgres) {
			bundles[i].Mesh.Proxies = append(bundles[i].Mesh.Proxies, consulcfg.Proxy{Service: "postgres-5432-" + dashed, Class: "postgres-5432", Ingress: true, Target: "127.0.0.1:5432"})
		}
	}
	var router, pg string
	for _, n := range topo.Nodes {
		if n.Has(inventory.Router) && router == "" {
			router = n.Name
		}
	}
	paths := meshPaths(topo, bundles, want, []string{router})
	denied := 0
	for _, p := range paths[router] {
		if strings.HasPrefix(p.Class, "postgres") {
			pg = p.To
			if p.Allowed {
				t.Errorf("router -> postgres is allowed: %+v", p)
			}
		}
		if p.Class == "zk-2181" && !p.Allowed {
			t.Errorf("router -> zookeeper is denied: %+v", p)
		}
		if !p.Allowed {
			denied++
		}
	}
	if pg == "" || denied != 1 {
		t.Errorf("want exactly one denied sample (postgres), got %d: %+v", denied, paths[router])
	}

	for _, tc := range []struct {
		allowed bool
		outcome string
		ok      bool
	}{
		{true, distribute.ProbeAnswered, true}, {true, distribute.ProbeHeld, true}, {true, distribute.ProbeClosed, false},
		{true, distribute.ProbeTimeout, false}, {false, distribute.ProbeClosed, true}, {false, distribute.ProbeTimeout, true},
		{false, distribute.ProbeAnswered, false}, {false, distribute.ProbeHeld, false}, {false, distribute.ProbeError, false},
	} {
		p := &MeshPath{Allowed: tc.allowed, Result: distribute.ProbeResult{Outcome: tc.outcome}}
		judge(p)
		if p.OK != tc.ok || (!p.OK && p.Problem == "") {
			t.Errorf("allowed=%v %s: ok=%v problem=%q, want ok=%v", tc.allowed, tc.outcome, p.OK, p.Problem, tc.ok)
		}
	}
}
