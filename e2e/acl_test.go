package e2e

// ACLs and a cluster that runs without them: real sshd hosts in network
// namespaces, real Consul 1.6.2 agents and proxies.

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/internal/app"
)

// TestACLNotTurnedOnInRunningCluster162: a cluster bootstrapped with
// `acl: {enabled: false}` whose file then turns ACLs on (the default) is
// refused by apply with what to do, and nothing changes: on Consul 1.6 a
// server restarted with ACLs refuses every request while the leader runs
// without them (checked by hand: its proxies' authorize calls fail with
// "ACL not found"), so a rolling restart would break the mesh.
func TestACLNotTurnedOnInRunningCluster162(t *testing.T) {
	nodes := []lcNode{
		{"a1", "dc-1", []string{"zookeeper", "cassandra"}},
		{"a2", "dc-1", []string{"zookeeper", "cassandra"}},
		{"a3", "dc-1", []string{"zookeeper", "cassandra", "router"}},
	}
	lc := lcStart(t, lcSpec{version: "1.6.2", subnet: "198.18.120.0/24", prefix: "ac", nodes: nodes, extra: "acl:\n  enabled: false\n"})
	lcCheckHealth(t, lc.Health, map[string]int{"dc-1": 3}, 3)
	if t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfgPath := lc.net.Node("a1").Path("/etc/consul.d/mtlsctl-agent.json")
	before, err := os.ReadFile(cfgPath)
	if err != nil || strings.Contains(string(before), `"acl"`) {
		t.Fatalf("acl: {enabled: false} rendered an acl stanza (or no config: %v)", err)
	}
	meshServers(t, lc, nodes)
	probe := startMeshProbe(lc, "a3", net.JoinHostPort(lc.net.Node("a1").Addr, "2181"))

	inv, err := os.ReadFile(lc.common.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lc.common.Inventory, []byte(strings.Replace(string(inv), "acl:\n  enabled: false\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := app.Generate(lc.common, app.GenerateOptions{}); err != nil {
		t.Fatalf("generate (tokens): %v\n%s", err, lc.out)
	}
	err = app.Apply(ctx, lc.common, lc.dist, app.ApplyOptions{Yes: true})
	time.Sleep(300 * time.Millisecond)
	ops, fails := probe.finish()
	t.Logf("apply: %v; mesh probe: %d connections, %d failed", err, ops, len(fails))
	if err == nil || !strings.Contains(err.Error(), "acl: {enabled: false}") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("apply turning ACLs on in a running cluster: %v, want a refusal saying what to do", err)
	}
	for _, f := range fails {
		t.Errorf("mesh probe: %s", f)
	}
	after, _ := os.ReadFile(cfgPath)
	if string(after) != string(before) {
		t.Errorf("a1's agent config changed although apply refused")
	}
	st, err := ca.Open(lc.common.State, ca.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ManagementToken(); !errors.Is(err, ca.ErrNoManagementToken) {
		t.Errorf("a management token appeared: %v", err)
	}
}
