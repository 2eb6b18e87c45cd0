package distribute

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStatus(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a", server: true}, nodeSpec{name: "b"}, nodeSpec{name: "down"})
	b := f.bundles("")
	f.servers["down"].Close()
	f.topo.Nodes = f.topo.Nodes[:2]
	if _, err := f.apply(t, b[:2], f.opts()); err != nil {
		t.Fatal(err)
	}
	f.topo.Nodes = append(f.topo.Nodes, f.topo.Cluster.Datacenters[0].Nodes[2])
	// Drift on b: someone edited the config by hand.
	os.WriteFile(f.servers["b"].Path("/etc/consul.d/services.json"), []byte("{}"), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Status(ctx, f.topo, nil, f.opts())
	if err == nil {
		t.Error("no error for the unreachable node")
	}
	if res.OK() {
		t.Error("OK with drift and an unreachable node")
	}
	wantCA := certFingerprint(f.caPEM)
	a, bs, down := res.Nodes[0], res.Nodes[1], res.Nodes[2]
	tests := []struct {
		name string
		ok   bool
	}{
		{"a reachable", a.Reachable},
		{"a generation", a.Generation == b[0].Generation},
		{"a CA fingerprint", a.CAFingerprint == wantCA},
		{"a gossip fingerprint", a.GossipFingerprint == GossipFingerprint(f.gossip)},
		{"a cert expiry", time.Until(a.CertNotAfter) > 364*24*time.Hour},
		{"a no drift", len(a.Drift) == 0},
		{"b drift on services.json", len(bs.Drift) == 1 && bs.Drift[0].Path == "/etc/consul.d/services.json" && bs.Drift[0].Reason == "content"},
		{"down unreachable", !down.Reachable && down.Error != ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok {
				t.Errorf("failed: %+v", res.Nodes)
			}
		})
	}
	js, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), f.gossip) || strings.Contains(string(js), "PRIVATE KEY") {
		t.Error("status JSON holds a secret")
	}

	// With bundles: pending when the node's generation is not the bundle's.
	nb := f.bundles("-new")
	f.topo.Nodes = f.topo.Nodes[:2]
	res, err = Status(ctx, f.topo, nb[:2], f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Nodes[0].Pending || res.Nodes[0].Expected != nb[0].Generation {
		t.Errorf("pending not reported: %+v", res.Nodes[0])
	}
}
