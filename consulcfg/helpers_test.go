package consulcfg

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"testing"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// Components shorthand for test topologies.
const (
	zk   = inventory.ZooKeeper
	cass = inventory.Cassandra
	ldap = inventory.OpenLDAP
	pg   = inventory.Postgres
	qpid = inventory.Qpid
	mp   = inventory.MessageProcessor
	rt   = inventory.Router
	ms   = inventory.ManagementServer
	ui   = inventory.UI
)

type testNode struct {
	name, addr string
	comps      []inventory.Component
}

type testDC struct {
	name  string
	nodes []testNode
}

func node(name, addr string, comps ...inventory.Component) testNode {
	return testNode{name: name, addr: addr, comps: comps}
}

// newTopology builds a Topology the way inventory's validation would: the
// defaults filled in and every node's Datacenter set. (Tests here must not
// depend on inventory.Parse, which is written separately.)
func newTopology(t testing.TB, version string, dcs ...testDC) *inventory.Topology {
	t.Helper()
	cl := &inventory.Cluster{
		Name: "edge-test",
		Consul: inventory.Consul{
			Version:        version,
			Domain:         "consul",
			ConfigDir:      "/etc/consul.d",
			TLSDir:         "/etc/consul.d/tls",
			DataDir:        "/opt/consul",
			ReloadCommand:  "systemctl reload consul",
			RestartCommand: "systemctl restart consul",
			LogLevel:       "INFO",
		},
		SSH:          inventory.SSH{User: "root", Port: 22},
		NodeStateDir: "/var/lib/mtlsctl",
	}
	top := &inventory.Topology{Cluster: cl}
	for _, d := range dcs {
		dc := inventory.Datacenter{Name: d.name}
		for _, tn := range d.nodes {
			n := &inventory.Node{Name: tn.name, Address: tn.addr, Components: tn.comps, Datacenter: d.name}
			dc.Nodes = append(dc.Nodes, n)
			top.Nodes = append(top.Nodes, n)
		}
		cl.Datacenters = append(cl.Datacenters, dc)
	}
	return top
}

// apigeeRanges are Apigee's default proxy port ranges (the first port).
var apigeeRanges = map[string]int{
	"zookeeper": 10001, "cassandra": 10100, "openldap": 10200, "postgres": 10300,
	"qpid": 10400, "message-processor": 10500, "router": 10600, inventory.Egress: 10700,
}

// assign hands out ports linearly per component, in topology order, the way
// Apigee does: the first postgres node gets 10300-10302, the second 10303-...
func assign(top *inventory.Topology) *inventory.Assignment {
	next := map[string]int{}
	for k, v := range apigeeRanges {
		next[k] = v
	}
	a := &inventory.Assignment{Nodes: map[string]map[string][]int{}}
	take := func(n *inventory.Node, comp string, count int) {
		if a.Nodes[n.Name] == nil {
			a.Nodes[n.Name] = map[string][]int{}
		}
		for range count {
			a.Nodes[n.Name][comp] = append(a.Nodes[n.Name][comp], next[comp])
			next[comp]++
		}
	}
	for _, comp := range inventory.Components {
		for _, n := range top.Nodes {
			if per := inventory.PortsPerNode(string(comp)); n.Has(comp) && per > 0 {
				take(n, string(comp), per)
			}
		}
	}
	for _, n := range top.Nodes {
		take(n, inventory.Egress, 1)
	}
	return a
}

func fakePEM(typ, body string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: []byte(body)})
}

// testGossipKey is 32 bytes 0x00..0x1f: a fixed, obviously fake key.
var testGossipKey = func() string {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i)
	}
	return base64.StdEncoding.EncodeToString(b)
}()

// newInput builds an Input with fake PEMs for every node of top.
func newInput(top *inventory.Topology) Input {
	in := Input{
		Topology:  top,
		Ports:     assign(top),
		CABundle:  fakePEM("CERTIFICATE", "TEST CA: not a real certificate"),
		Leaves:    map[string]Leaf{},
		GossipKey: testGossipKey,
	}
	for _, n := range top.Nodes {
		in.Leaves[n.Name] = Leaf{
			CertPEM: fakePEM("CERTIFICATE", "TEST leaf for "+n.Name+": not a real certificate"),
			KeyPEM:  fakePEM("EC PRIVATE KEY", "TEST key for "+n.Name+": not a real key"),
		}
	}
	return in
}

// fiveNode is Apigee's 5-node topology on Consul 1.6.2, with the agent
// running as consul:consul.
func fiveNode(t testing.TB) Input {
	top := newTopology(t, "1.6.2", testDC{name: "dc-1", nodes: []testNode{
		node("n1", "10.0.0.11", zk, cass, ms, ldap, ui),
		node("n2", "10.0.0.12", zk, cass, rt, mp),
		node("n3", "10.0.0.13", zk, cass, rt, mp),
		node("n4", "10.0.0.14", pg, qpid),
		node("n5", "10.0.0.15", pg, qpid),
	}})
	top.Cluster.Consul.User, top.Cluster.Consul.Group = "consul", "consul"
	return newInput(top)
}

// twoDC is a two-datacenter cluster on Consul 1.13.9 with a custom domain;
// m4's address is a go-sockaddr template.
func twoDC(t testing.TB) Input {
	top := newTopology(t, "1.13.9",
		testDC{name: "dc-1", nodes: []testNode{
			node("n1", "10.0.1.11", zk, cass, ms, ldap),
			node("n2", "10.0.1.12", zk, cass, rt, mp),
			node("n3", "10.0.1.13", zk, cass, rt, mp),
			node("n4", "10.0.1.14", pg, qpid),
		}},
		testDC{name: "dc-2", nodes: []testNode{
			node("m1", "10.0.2.11", zk, cass, ms, ldap),
			node("m2", "10.0.2.12", zk, cass, rt, mp),
			node("m3", "10.0.2.13", zk, cass, pg, qpid),
			node("m4", `{{ GetPrivateIP }}`, rt, mp),
		}},
	)
	top.Cluster.Consul.Domain = "edge.internal"
	top.Node("m4").SSHHost = "m4.example.internal"
	return newInput(top)
}

// withMesh turns the mesh on, with the settings inventory's defaults give.
func withMesh(in Input) Input {
	in.Topology.Cluster.Mesh = inventory.Mesh{
		Enabled:      true,
		UnitDir:      "/etc/systemd/system",
		ConsulBinary: "/usr/bin/consul",
		ProxyUser:    "nobody",
	}
	return in
}

// withACL turns ACLs on with stable made-up tokens (UUID-shaped, derived
// from the node and service names) for every agent and service.
func withACL(f func(testing.TB) Input) func(testing.TB) Input {
	return func(t testing.TB) Input {
		in := f(t)
		in.Topology.Cluster.ACL = inventory.ACL{Enabled: true, TokenDir: DefaultTokenDir}
		refs, err := NodeServices(in.Topology, in.Ports)
		if err != nil {
			t.Fatal(err)
		}
		in.Tokens = map[string]NodeTokens{}
		for _, n := range in.Topology.Nodes {
			nt := NodeTokens{Agent: testToken("agent " + n.Name), Services: map[string]string{}}
			if in.Topology.MultiDC() && n.IsServer() && n.Datacenter != in.Topology.Cluster.Datacenters[0].Name {
				nt.Replication = testToken("replication")
			}
			for _, r := range refs[n.Name] {
				nt.Services[r.ID] = testToken("service " + r.ID)
			}
			in.Tokens[n.Name] = nt
		}
		return in
	}
}

// testToken is a UUID-shaped stand-in for a token secret.
func testToken(seed string) string {
	h := sha256.Sum256([]byte(seed))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-4" + x[13:16] + "-8" + x[17:20] + "-" + x[20:32]
}

// fiveNodeMesh is fiveNode with the mesh on.
func fiveNodeMesh(t testing.TB) Input { return withMesh(fiveNode(t)) }

// twoDCMesh is a two-datacenter cluster with the mesh on (every address a
// literal, as the mesh needs).
func twoDCMesh(t testing.TB) Input {
	top := newTopology(t, "1.6.2",
		testDC{name: "dc-1", nodes: []testNode{
			node("n1", "10.0.1.11", zk, cass, ms, ldap),
			node("n2", "10.0.1.12", zk, cass, rt, mp),
			node("n3", "10.0.1.13", zk, cass, pg, qpid),
		}},
		testDC{name: "dc-2", nodes: []testNode{
			node("m1", "10.0.2.11", zk, cass, ms, ldap),
			node("m2", "10.0.2.12", zk, cass, rt, mp),
			node("m3", "10.0.2.13", zk, cass, pg, qpid),
		}},
	)
	return withMesh(newInput(top))
}
