package consulapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
	"github.com/mtlsctl/mtlsctl/inventory"
)

func liveTopo(t *testing.T) *inventory.Topology {
	t.Helper()
	topo, err := inventory.Parse("cluster.yaml", []byte(`cluster: t
datacenters:
  - name: dc-1
    nodes:
      - {name: s1, address: 10.0.0.1, components: [zookeeper]}
      - {name: s2, address: 10.0.0.2, components: [zookeeper]}
      - {name: s3, address: 10.0.0.3, components: [zookeeper]}
      - {name: c1, address: 10.0.0.4, components: [qpid]}
`))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// healthy is a Health in which everything is as it should be.
func healthy() *Health {
	ms := []Member{{Name: "c1", Status: MemberAlive}, {Name: "s1", Status: MemberAlive, Server: true},
		{Name: "s2", Status: MemberAlive, Server: true}, {Name: "s3", Status: MemberAlive, Server: true}}
	return &Health{
		Datacenters: []*DCHealth{{Name: "dc-1", Via: "s1", Leader: "s2", Members: ms,
			Peers: []RaftPeer{{Node: "s1", Voter: true}, {Node: "s2", Voter: true, Leader: true}, {Node: "s3", Voter: true}}}},
		Keyring: []KeyringPool{{Datacenter: "dc-1", NumNodes: 4, Keys: []KeyCount{{Fingerprint: "sha256:k1", Nodes: 4}}}},
		Nodes: []*NodeHealth{{Node: "s1", Cert: &CertCheck{Match: true}}, {Node: "s2", Cert: &CertCheck{Match: true}},
			{Node: "s3", Cert: &CertCheck{Match: true}}, {Node: "c1", Cert: &CertCheck{Match: true}}},
	}
}

func TestHealthProblems(t *testing.T) {
	topo := liveTopo(t)
	tests := []struct {
		name   string
		mutate func(h *Health)
		want   Want
		expect string // substring of the problems; "" = healthy
	}{
		{"healthy", func(*Health) {}, Want{Certs: true, Key: "sha256:k1"}, ""},
		{"no leader", func(h *Health) { h.Datacenters[0].Leader = "" }, Want{}, "has no leader"},
		{"failed client", func(h *Health) { h.Datacenters[0].Members[0].Status = MemberFailed }, Want{}, "c1 is failed"},
		{"failed client not wanted", func(h *Health) { h.Datacenters[0].Members[0].Status = MemberFailed }, Want{Nodes: []string{"s1", "s2", "s3"}}, ""},
		{"non-voter", func(h *Health) { h.Datacenters[0].Peers[2].Voter = false }, Want{}, "s3 is not a raft voter"},
		{"missing member", func(h *Health) { h.Datacenters[0].Members = h.Datacenters[0].Members[1:] }, Want{}, "c1 is not a member"},
		{"unreachable dc", func(h *Health) { h.Datacenters[0].Via, h.Datacenters[0].Error = "", "no agent answered" }, Want{}, "no agent answered"},
		{"other cert", func(h *Health) { h.Nodes[3].Cert = &CertCheck{Expected: "sha256:a", Served: "sha256:b"} }, Want{Certs: true}, "c1 serves sha256:b"},
		{"other cert not wanted", func(h *Health) { h.Nodes[3].Cert = &CertCheck{} }, Want{}, ""},
		{"key not everywhere", func(h *Health) { h.Keyring[0].Keys[0].Nodes = 3 }, Want{Key: "sha256:k1"}, "on 3 of 4 members of the dc-1 LAN pool"},
		{"unknown key", func(*Health) {}, Want{Key: "sha256:k2"}, "key sha256:k2 is on 0 of 4"},
		{"unknown node", func(*Health) {}, Want{Nodes: []string{"zz"}}, `node "zz" is not in the cluster file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := healthy()
			tt.mutate(h)
			got := strings.Join(h.Problems(topo, tt.want), "; ")
			if tt.expect == "" && got != "" {
				t.Errorf("problems %q, want none", got)
			}
			if tt.expect != "" && !strings.Contains(got, tt.expect) {
				t.Errorf("problems %q, want one containing %q", got, tt.expect)
			}
		})
	}
}

func TestQuorum(t *testing.T) {
	tests := []struct {
		name          string
		mutate        func(d *DCHealth)
		alive, voters int
		ok            bool
	}{
		{"all alive", func(*DCHealth) {}, 3, 3, true},
		{"one failed", func(d *DCHealth) { d.Members[1].Status = MemberFailed }, 2, 3, true},
		{"two failed", func(d *DCHealth) { d.Members[1].Status, d.Members[2].Status = MemberFailed, MemberLeft }, 1, 3, false},
		{"no leader", func(d *DCHealth) { d.Leader = "" }, 3, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := healthy().Datacenters[0]
			tt.mutate(d)
			alive, voters, ok := d.Quorum()
			if alive != tt.alive || voters != tt.voters || ok != tt.ok {
				t.Errorf("Quorum = %d, %d, %v; want %d, %d, %v", alive, voters, ok, tt.alive, tt.voters, tt.ok)
			}
		})
	}
}

func TestKeyringPoolsHideKeys(t *testing.T) {
	const secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	pools := keyringPools([]*api.KeyringResponse{
		{WAN: true, Datacenter: "dc-1", NumNodes: 3, Keys: map[string]int{secret: 3}},
		{Datacenter: "dc-1", NumNodes: 5, Keys: map[string]int{secret: 5, "b2xk": 2}, PrimaryKeys: map[string]int{secret: 5}},
	})
	out, err := json.Marshal(pools)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), secret) {
		t.Fatalf("keyring report holds the key itself: %s", out)
	}
	if pools[0].WAN || !pools[1].WAN {
		t.Errorf("LAN pools must come before WAN: %+v", pools)
	}
	k := pools[0].Key(fingerprint.Gossip(secret))
	if k == nil || k.Nodes != 5 || k.PrimaryNodes != 5 {
		t.Errorf("LAN key entry %+v, want 5 nodes, primary on 5", k)
	}
}

func TestRollErrorMessage(t *testing.T) {
	cause := errors.Join(ErrNotHealthy, errors.New("s1 did not come back"))
	tests := []struct {
		name string
		e    *RollError
		want []string
	}{
		{"quorum kept", &RollError{Node: "s1", Untouched: []string{"s3", "s2"}, Quorum: true, Leader: "s2", Alive: 2, Voters: 3, Err: cause},
			[]string{"stopped at s1", "not touched: s3, s2", "still has quorum (leader s2, 2 of 3 voters alive)"}},
		{"quorum lost", &RollError{Node: "s1", Alive: 1, Voters: 3, Err: cause},
			[]string{"NO quorum (1 of 3 voters alive", "bring s1 back first"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.e.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
			if !errors.Is(tt.e, ErrNotHealthy) {
				t.Error("RollError does not unwrap to ErrNotHealthy")
			}
		})
	}
}
