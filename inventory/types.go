// Package inventory owns the cluster file: its schema, loading, validation
// (errors name file, line and field), defaults, the import of an Apigee silent
// config, address handling and the proxy-port assignment.
//
// It is pure data: it never touches the network, the state directory or any
// secret. Other packages take a *Topology, which is only ever built by
// validation, so a Topology in hand is a valid one.
package inventory

import "fmt"

// Component is an Apigee Edge component a node runs.
type Component string

// The components the cluster file accepts.
const (
	ZooKeeper        Component = "zookeeper"
	Cassandra        Component = "cassandra"
	OpenLDAP         Component = "openldap"
	Postgres         Component = "postgres"
	Qpid             Component = "qpid"
	MessageProcessor Component = "message-processor"
	Router           Component = "router"
	ManagementServer Component = "management-server"
	UI               Component = "ui"
)

// Egress names the apigee-mtls egress proxy that every node runs. It is not a
// component a user lists, but it has a port range of its own.
const Egress = "egress"

// Components lists every valid component in a fixed order (the order used for
// port assignment and output).
var Components = []Component{ZooKeeper, Cassandra, OpenLDAP, Postgres, Qpid, MessageProcessor, Router, ManagementServer, UI}

// PortRange is an inclusive range of TCP ports.
type PortRange struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// Size is the number of ports in the range.
func (r PortRange) Size() int { return r.Max - r.Min + 1 }

// Contains reports whether p is inside the range.
func (r PortRange) Contains(p int) bool { return p >= r.Min && p <= r.Max }

// Overlaps reports whether two ranges share a port.
func (r PortRange) Overlaps(o PortRange) bool { return r.Min <= o.Max && o.Min <= r.Max }

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

// Cluster is the cluster file after defaults are applied.
type Cluster struct {
	Name   string `json:"cluster"`
	Consul Consul `json:"consul"`
	SSH    SSH    `json:"ssh"`
	// Ports holds the effective range per component name (and Egress), the
	// defaults from Apigee's table merged with the file's overrides.
	Ports map[string]PortRange `json:"ports"`
	// NodeStateDir is mtlsctl's own state directory on each node.
	NodeStateDir string `json:"node_state_dir"`
	// Backups says how many backups of replaced files each node keeps.
	Backups Backups `json:"backups"`
	// Certs holds the node certificates' settings.
	Certs Certs `json:"certs"`
	// Mesh configures the Consul Connect service mesh (proxies, transparent
	// egress, intentions, firewall). On by default.
	Mesh Mesh `json:"mesh"`
	// ACL configures Consul's ACL system (default deny, tokens made and
	// kept by mtlsctl). On by default.
	ACL         ACL          `json:"acl"`
	Datacenters []Datacenter `json:"datacenters"`
	// Sandbox marks a cluster file written by `mtlsctl sandbox up`: its
	// nodes are local sandbox SSH servers that hold files but run no Consul
	// agent (nil for a real cluster).
	Sandbox *Sandbox `json:"sandbox,omitempty"`
	// Source is the path the cluster was loaded from ("" when parsed from bytes).
	Source string `json:"-"`
}

// Sandbox is the cluster file's `sandbox:` block. With it, commands leave
// the (absent) agents alone as the demo does, and read SSH keys from
// Dir/home instead of the user's ~/.ssh.
type Sandbox struct {
	// Dir is the sandbox directory (absolute): node roots, host keys, the
	// client key, the state.
	Dir string `json:"dir"`
}

// Consul holds the agent settings shared by every node.
type Consul struct {
	Version        string `json:"version"`         // default 1.6.2; picks the config schema
	Domain         string `json:"domain"`          // default consul
	ConfigDir      string `json:"config_dir"`      // default /etc/consul.d
	TLSDir         string `json:"tls_dir"`         // default /etc/consul.d/tls
	DataDir        string `json:"data_dir"`        // default /opt/consul
	ReloadCommand  string `json:"reload_command"`  // default "systemctl reload consul"
	RestartCommand string `json:"restart_command"` // default "systemctl restart consul"
	// User and Group own the files on the nodes ("" = root / leave as is).
	// With a group set, private keys are 0640 so the agent can read them.
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	// LogLevel is passed through to the agent config (default INFO).
	LogLevel string `json:"log_level,omitempty"`
}

// SSH holds how mtlsctl reaches the nodes; a node may override host, user and port.
type SSH struct {
	User         string `json:"user"`              // default root
	Port         int    `json:"port"`              // default 22
	IdentityFile string `json:"identity_file"`     // may start with ~/
	KnownHosts   string `json:"known_hosts"`       // may start with ~/
	Bastion      string `json:"bastion,omitempty"` // [user@]host[:port], as ProxyJump
	Sudo         bool   `json:"sudo,omitempty"`    // stage as the user, install with sudo
}

// Backups is the cluster file's `backups:` block.
type Backups struct {
	// Keep is how many backup generations each node keeps under
	// <node_state_dir>/backup (default DefaultBackupsKeep, at least 1): a
	// commit that makes a new one deletes the oldest beyond Keep. They hold
	// replaced private keys and gossip keys, so fewer is safer.
	Keep int `json:"keep"`
}

// Certs is the cluster file's `certs:` block.
type Certs struct {
	// Days is the validity of new node certificates, which generate uses
	// unless --cert-days is given (0 = unset: the flag's default, 365).
	// An Apigee import takes it from APIGEE_MTLS_NUM_DAYS_CERT_VALID_FOR.
	Days int `json:"days,omitempty"`
}

// MaxCertDays bounds certs.days (and an imported validity): 100 years.
const MaxCertDays = 36500

// Mesh is the cluster file's `mesh:` block.
type Mesh struct {
	// Enabled turns the mesh on (default true). Off keeps Consul-only
	// behaviour: no proxies, no nat rules, no intentions, no firewall load.
	Enabled bool `json:"enabled"`
	// UnitDir is where the proxy and firewall systemd units are written
	// (default /etc/systemd/system).
	UnitDir string `json:"unit_dir"`
	// ConsulBinary is the absolute path of the consul binary on the nodes,
	// which the proxy units run (default /usr/bin/consul).
	ConsulBinary string `json:"consul_binary"`
	// ProxyUser runs the proxies (default: consul.user, else "nobody").
	ProxyUser string `json:"proxy_user"`
	// LDAPOutside leaves OpenLDAP outside the mesh (`encapsulate_ldap:
	// false`, Apigee's MTLS_ENCAPSULATE_LDAP=n): no proxy, intention, nat
	// or loopback-only rule for its port; its clients reach it directly.
	LDAPOutside bool `json:"ldap_outside,omitempty"`
	// Allow adds allow rules to Apigee's connection table.
	Allow []AllowRule `json:"allow,omitempty"`
}

// ACL is the cluster file's `acl:` block.
type ACL struct {
	// Enabled turns Consul's ACL system on with default_policy deny (default
	// true): mtlsctl bootstraps it once, keeps the management token in the
	// state directory, and gives every agent and every proxy a token of its
	// own. Off leaves the agents' HTTP API open to every local user.
	Enabled bool `json:"enabled"`
	// TokenDir is where each node keeps its proxies' token files (default
	// /etc/mtlsctl/acl), one per proxy, 0600 and owned by the proxy user.
	TokenDir string `json:"token_dir"`
}

// AllowRule lets every node running From reach every listener of To on the
// other nodes, through the mesh.
type AllowRule struct {
	From Component `json:"from"`
	To   Component `json:"to"`
	// Line is the rule's line in the cluster file (0 when unknown).
	Line int `json:"-"`
}

// Datacenter is one Consul datacenter and its nodes.
type Datacenter struct {
	Name  string  `json:"name"`
	Nodes []*Node `json:"nodes"`
}

// Node is one host of the cluster.
type Node struct {
	Name string `json:"name"`
	// Address is the node's cluster address: an IP literal, or a go-sockaddr
	// template (e.g. `{{ GetPrivateInterfaces | attr "address" }}`) that the
	// agent resolves on the node (then SSHHost must be set).
	Address    string      `json:"address"`
	Components []Component `json:"components"`
	// SSHHost, SSHUser and SSHPort override how to reach the node ("" / 0 =
	// Address and the cluster's ssh settings).
	SSHHost string `json:"ssh_host,omitempty"`
	SSHUser string `json:"ssh_user,omitempty"`
	SSHPort int    `json:"ssh_port,omitempty"`
	// Datacenter is filled in from the enclosing datacenter.
	Datacenter string `json:"-"`
	// Line is the node's line in the cluster file (0 when unknown).
	Line int `json:"-"`
}

// Has reports whether the node runs c.
func (n *Node) Has(c Component) bool {
	for _, x := range n.Components {
		if x == c {
			return true
		}
	}
	return false
}

// IsServer reports whether the node runs a Consul server (the ZooKeeper nodes do).
func (n *Node) IsServer() bool { return n.Has(ZooKeeper) }

// IsTemplate reports whether Address is a go-sockaddr template rather than an IP.
func (n *Node) IsTemplate() bool { return len(n.Address) > 1 && n.Address[0] == '{' }

// Topology is a validated cluster: only Validate/Load/Parse build one.
type Topology struct {
	Cluster *Cluster
	// Nodes lists every node, in file order.
	Nodes []*Node
	// Warnings are things valid but probably not meant (a node with no
	// components, an even number of servers), in file order.
	Warnings []Warning
}

// Node returns the node with the given name, or nil.
func (t *Topology) Node(name string) *Node {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Servers returns the Consul servers of datacenter dc, in file order.
func (t *Topology) Servers(dc string) []*Node {
	var out []*Node
	for _, n := range t.Nodes {
		if n.Datacenter == dc && n.IsServer() {
			out = append(out, n)
		}
	}
	return out
}

// MultiDC reports whether the cluster has more than one datacenter.
func (t *Topology) MultiDC() bool { return len(t.Cluster.Datacenters) > 1 }

// Assignment is the proxy-port assignment: for each node, the ports of each
// component it runs (keyed by component name, plus Egress). It is recorded in
// the state directory so that adding a node never renumbers existing ones.
type Assignment struct {
	Nodes map[string]map[string][]int `json:"nodes"`
}

// Ports returns the ports assigned to node for component (nil if none).
func (a *Assignment) Ports(node, component string) []int {
	if a == nil || a.Nodes == nil {
		return nil
	}
	return a.Nodes[node][component]
}
