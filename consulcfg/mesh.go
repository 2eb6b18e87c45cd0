package consulcfg

// The mesh (Consul Connect) part of a bundle. consulcfg decides every name,
// unit, rule and intention; distribute only carries out what Bundle.Mesh
// lists (see doc.go).

import (
	"cmp"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// Mesh names shared by every node.
const (
	// EgressChain is the nat chain jumped to from nat OUTPUT that redirects
	// a component's connection to a remote meshed port into the local
	// upstream listener.
	EgressChain = "MTLSCTL-EGRESS"
	// FirewallUnit is the systemd unit that loads the rules at boot.
	FirewallUnit = "mtlsctl-firewall.service"
	// FirewallScriptName is the node-state script that loads ("load") and
	// removes ("unload") mtlsctl's chains and jump rules; apply, uninstall
	// and FirewallUnit all run it.
	FirewallScriptName = "firewall.sh"
	// IntentionMetaKey marks the intentions mtlsctl made (value: the
	// cluster name); intentions without it are never touched.
	IntentionMetaKey = "mtlsctl-cluster"
)

// Proxy is one Connect proxy process on a node, run by a systemd unit.
type Proxy struct {
	// Unit is the systemd unit file name, e.g.
	// "mtlsctl-proxy-zk-2181-198-18-0-11.service".
	Unit string `json:"unit"`
	// Service is the Consul service ID the proxy serves
	// (`consul connect proxy -sidecar-for <Service>`), e.g.
	// "zk-2181-198-18-0-11" or "egress-198-18-0-11". It is also the
	// service name, and so the identity intentions name.
	Service string `json:"service"`
	// Class groups the proxies of the same listener on every node
	// ("zk-2181", "egress"): apply never restarts two proxies of one class
	// at the same time.
	Class string `json:"class"`
	// Ingress is true for a component listener's sidecar, false for the
	// node's egress proxy.
	Ingress bool `json:"ingress"`
	// Listen is the public listener (host:port): the node address and the
	// assigned proxy port for ingress; a loopback address for egress.
	Listen string `json:"listen"`
	// Target is what an ingress proxy delivers to (127.0.0.1:<component
	// port>); empty for egress.
	Target string `json:"target,omitempty"`
	// Upstreams counts an egress proxy's local upstream listeners.
	Upstreams int `json:"upstreams,omitempty"`
	// Digest changes whenever the proxy's unit or its service registration
	// changes: such a proxy is restarted by apply, the others are not.
	Digest string `json:"digest"`
}

// Mesh says what, besides its files, a node must run for the mesh. It is
// nil when the cluster's mesh is disabled.
type Mesh struct {
	// UnitDir holds the proxy and firewall units (absolute, on the node).
	UnitDir string `json:"unit_dir"`
	// Proxies, in a fixed order (ingress in listener order, egress last).
	Proxies []Proxy `json:"proxies"`
	// FirewallScript is the absolute path of the bundle's firewall script
	// (run as `sh <path> load` or `sh <path> unload`).
	FirewallScript string `json:"firewall_script"`
	// FirewallDigest changes when the rules (or the script) change.
	FirewallDigest string `json:"firewall_digest"`
}

// Intention is one Connect intention mtlsctl wants (see Intentions).
type Intention struct {
	Source      string `json:"source"`      // service name or "*"
	Destination string `json:"destination"` // service name or "*"
	Action      string `json:"action"`      // "allow" or "deny"
	// Description says why (e.g. "management-server -> zookeeper (Apigee table)").
	Description string `json:"description"`
}

// meshListener is one component listener that the mesh carries.
type meshListener struct {
	Target  int // the component's own port
	Purpose string
}

// meshListeners maps each component to the listeners the mesh carries, in
// the order of the component's assigned ports: the i-th assigned port is
// the i-th listener's proxy port; further assigned ports stay reserved and
// unused (Apigee's table gives Postgres three). Router to Message Processor
// traffic (8998) and the load balancer's Router health check (15999) are
// not meshed: they are not in Apigee's table of mTLS connections.
var meshListeners = map[inventory.Component][]meshListener{
	inventory.ZooKeeper: {
		{2181, "ZooKeeper client connections (2181)"},
		{2888, "ZooKeeper quorum: followers to leader (2888)"},
		{3888, "ZooKeeper leader election (3888)"},
	},
	inventory.Cassandra: {
		{9042, "Cassandra CQL native protocol (9042)"},
		{9160, "Cassandra Thrift clients (9160)"},
	},
	inventory.OpenLDAP: {
		{10389, "OpenLDAP (10389)"},
	},
	inventory.Postgres: {
		{5432, "PostgreSQL clients and standby replication (5432)"},
		{8084, "Postgres Server management API (8084)"},
	},
	inventory.Qpid: {
		{5672, "Qpid AMQP broker (5672)"},
		{8083, "Qpid Server management API (8083)"},
	},
	inventory.MessageProcessor: {
		{8082, "Message Processor management API (8082)"},
		{4528, "Message Processor RPC (4528)"},
	},
	inventory.Router: {
		{8081, "Router management API (8081)"},
		{4527, "Router RPC (4527)"},
	},
}

// shortNames are the component prefixes of Apigee's service names
// (zk-2888-192-168-1-1).
var shortNames = map[inventory.Component]string{
	inventory.ZooKeeper:        "zk",
	inventory.Cassandra:        "cassandra",
	inventory.OpenLDAP:         "ldap",
	inventory.Postgres:         "postgres",
	inventory.Qpid:             "qpid",
	inventory.MessageProcessor: "mp",
	inventory.Router:           "router",
}

const (
	loopback = "127.0.0.1"
	// meshEgressPurpose describes the egress sidecar's public listener.
	meshEgressPurpose = "egress proxy (local only; its upstreams carry the node's outbound mesh traffic)"
)

// meshClass names a listener across nodes: "<short>-<component port>".
func meshClass(c inventory.Component, target int) string {
	return shortNames[c] + "-" + strconv.Itoa(target)
}

// dashedAddress is an IPv4 address as service names carry it: 10-0-0-1.
func dashedAddress(a netip.Addr) string { return strings.ReplaceAll(a.String(), ".", "-") }

// ingressServiceName is the Consul service ID and name of one component
// listener on one node, e.g. "zk-2181-10-0-0-1": an upstream by name
// balances over every instance, so to reach one node's listener the name
// must be that node's alone.
func ingressServiceName(c inventory.Component, target int, dashed string) string {
	return meshClass(c, target) + "-" + dashed
}

// egressServiceName is the ID and name of a node's egress service, and so
// the identity its upstream connections carry (intentions name it).
func egressServiceName(dashed string) string { return inventory.Egress + "-" + dashed }

// meshedListeners is meshListeners[c] for a cluster: none for OpenLDAP
// when the cluster file leaves it outside the mesh (encapsulate_ldap:
// false).
func meshedListeners(cl *inventory.Cluster, c inventory.Component) []meshListener {
	if c == inventory.OpenLDAP && cl != nil && cl.Mesh.LDAPOutside {
		return nil
	}
	return meshListeners[c]
}

// meshListenerSpecs returns the mesh listeners of c on the node whose
// dashed address is given.
func meshListenerSpecs(cl *inventory.Cluster, c inventory.Component, dashed string) []listenerSpec {
	ms := meshedListeners(cl, c)
	if len(ms) == 0 {
		return nil
	}
	out := make([]listenerSpec, len(ms))
	for i, m := range ms {
		out[i] = listenerSpec{Service: ingressServiceName(c, m.Target, dashed), Target: m.Target, Purpose: m.Purpose}
	}
	return out
}

// meshAddress returns the node's address, which the mesh needs as an IPv4
// literal: service names, sidecar listeners and nat rules all carry it.
func meshAddress(n *inventory.Node) (netip.Addr, error) {
	a, ok := ipv4(n.Address)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w: the mesh needs the node's IPv4 address, not %q: set address to the node's IPv4 address, or mesh: {enabled: false}", ErrBadTopology, n.Address)
	}
	return a, nil
}

// meshSettings are the cluster's mesh settings with their defaults.
type meshSettings struct {
	unitDir, consulBinary, proxyUser string
}

// Mesh defaults, for a topology built without inventory's defaults.
const (
	DefaultUnitDir      = "/etc/systemd/system"
	DefaultConsulBinary = "/usr/bin/consul"
	DefaultProxyUser    = "nobody"
)

// newMeshSettings fills in the defaults and checks that what the units
// carry needs no quoting in a unit file (systemd would split a path at a
// space and expand % and $).
func newMeshSettings(cl *inventory.Cluster, consulUser, stateDir string) (meshSettings, error) {
	m := meshSettings{unitDir: cl.Mesh.UnitDir, consulBinary: cl.Mesh.ConsulBinary, proxyUser: cl.Mesh.ProxyUser}
	if m.unitDir == "" {
		m.unitDir = DefaultUnitDir
	}
	if m.consulBinary == "" {
		m.consulBinary = DefaultConsulBinary
	}
	if m.proxyUser == "" {
		m.proxyUser = consulUser
	}
	if m.proxyUser == "" {
		m.proxyUser = DefaultProxyUser
	}
	for _, d := range []struct {
		field string
		val   *string
	}{{"mesh.unit_dir", &m.unitDir}, {"mesh.consul_binary", &m.consulBinary}, {"node_state_dir", &stateDir}} {
		if !path.IsAbs(*d.val) || strings.Trim(*d.val, unitSafe) != "" {
			return m, fmt.Errorf("%w: %s %q must be an absolute path of letters, digits and / . _ - + @ , : (it goes into systemd units)", ErrBadTopology, d.field, *d.val)
		}
		*d.val = path.Clean(*d.val)
	}
	if strings.Trim(m.proxyUser, userSafe) != "" || strings.HasPrefix(m.proxyUser, "-") {
		return m, fmt.Errorf("%w: mesh.proxy_user %q is not a user name", ErrBadTopology, m.proxyUser)
	}
	return m, nil
}

const (
	userSafe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
	unitSafe = userSafe + "/+@,:"
)

// endpoint is one meshed listener of one node, as other nodes reach it.
type endpoint struct {
	node      *inventory.Node
	addr      netip.Addr
	component inventory.Component
	target    int
	service   string
}

// upstream is one of a node's egress upstreams: connections to Dest:Target
// are redirected (nat OUTPUT) to Bind:<egress port>, where the egress
// proxy's upstream listener carries them over mTLS to Service.
type upstream struct {
	Service    string
	Datacenter string // set only in a multi-DC cluster
	Dest       netip.Addr
	Target     int
	Bind       netip.Addr // 127.77.X.Y
}

// meshTopology is the cluster-wide part of the mesh: every meshed listener
// of every node, whatever its port assignment (an upstream names a service
// and a component port, never a proxy port).
type meshTopology struct {
	endpoints []endpoint // sorted by (address numerically, component port)
	multiDC   bool
}

// newMeshTopology lists the endpoints of the nodes with an IPv4 address
// (the others are refused by Render, see meshAddress).
func newMeshTopology(t *inventory.Topology) *meshTopology {
	m := &meshTopology{multiDC: t.MultiDC()}
	for _, n := range t.Nodes {
		a, ok := ipv4(n.Address)
		if !ok {
			continue
		}
		dashed := dashedAddress(a)
		for _, c := range inventory.Components {
			if !n.Has(c) {
				continue
			}
			for _, l := range meshedListeners(t.Cluster, c) {
				m.endpoints = append(m.endpoints, endpoint{node: n, addr: a, component: c, target: l.Target, service: ingressServiceName(c, l.Target, dashed)})
			}
		}
	}
	slices.SortStableFunc(m.endpoints, func(x, y endpoint) int {
		if c := x.addr.Compare(y.addr); c != 0 {
			return c
		}
		return cmp.Compare(x.target, y.target)
	})
	return m
}

// maxUpstreams is how many loopback addresses 127.77.0.0/16 gives out.
const maxUpstreams = 1<<16 - 1

// upstreams returns the egress upstreams of n: one per meshed listener of
// every other node (the intentions decide what is allowed), in endpoint
// order, the i-th (from 1) bound to 127.77.(i>>8).(i&255). They all share
// the node's egress port, each on its own loopback address: a sidecar's
// public listener never binds 0.0.0.0, so nothing collides.
func (m *meshTopology) upstreams(n *inventory.Node) ([]upstream, error) {
	out := make([]upstream, 0, len(m.endpoints))
	for _, e := range m.endpoints {
		if e.node == n {
			continue
		}
		i := len(out) + 1
		if i > maxUpstreams {
			return nil, fmt.Errorf("%w: the egress proxy would need more than %d upstreams, one per listener of the other nodes (127.77.0.0/16 is full)", ErrBadTopology, maxUpstreams)
		}
		u := upstream{Service: e.service, Dest: e.addr, Target: e.target, Bind: netip.AddrFrom4([4]byte{127, 77, byte(i >> 8), byte(i)})}
		if m.multiDC {
			u.Datacenter = e.node.Datacenter
		}
		out = append(out, u)
	}
	return out, nil
}
