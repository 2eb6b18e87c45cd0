package inventory

// Defaults applied to a cluster file's missing fields.
const (
	DefaultConsulVersion  = "1.6.2" // the version Apigee pins
	DefaultDomain         = "consul"
	DefaultConfigDir      = "/etc/consul.d"
	DefaultTLSDir         = "/etc/consul.d/tls"
	DefaultDataDir        = "/opt/consul"
	DefaultReloadCommand  = "systemctl reload consul"
	DefaultRestartCommand = "systemctl restart consul"
	DefaultLogLevel       = "INFO"
	DefaultSSHUser        = "root"
	DefaultSSHPort        = 22
	DefaultNodeStateDir   = "/var/lib/mtlsctl"
	DefaultBackupsKeep    = 3                     // backups.keep
	DefaultUnitDir        = "/etc/systemd/system" // mesh.unit_dir
	DefaultConsulBinary   = "/usr/bin/consul"     // mesh.consul_binary
	DefaultTokenDir       = "/etc/mtlsctl/acl"    // acl.token_dir
	// DefaultProxyUser runs the proxies when neither mesh.proxy_user nor
	// consul.user is set.
	DefaultProxyUser = "nobody"
)

// MinServers is the smallest number of Consul servers (ZooKeeper nodes) a
// datacenter may have: Apigee mTLS requires at least three.
const MinServers = 3

// ConsulPorts are the ports a Consul agent or server listens on (server RPC,
// LAN and WAN gossip, HTTP, gRPC, HTTPS, DNS). No proxy port range may
// include one of them.
var ConsulPorts = []int{8300, 8301, 8302, 8500, 8502, 8503, 8600}

// portsPerNode is Apigee's table of proxy ports per node for each component.
// Components missing here (management-server, ui) need no proxy port.
var portsPerNode = map[string]int{
	string(ZooKeeper):        3,
	string(Cassandra):        2,
	string(OpenLDAP):         1,
	string(Postgres):         3,
	string(Qpid):             2,
	string(MessageProcessor): 2,
	string(Router):           2,
	Egress:                   1,
}

// defaultRanges is Apigee's default proxy port range per component.
var defaultRanges = map[string]PortRange{
	string(ZooKeeper):        {10001, 10099},
	string(Cassandra):        {10100, 10199},
	string(OpenLDAP):         {10200, 10299},
	string(Postgres):         {10300, 10399},
	string(Qpid):             {10400, 10499},
	string(MessageProcessor): {10500, 10599},
	string(Router):           {10600, 10699},
	Egress:                   {10700, 10799},
}

// PortsPerNode returns how many proxy ports one node needs for component (a
// component name or Egress); 0 for components that need none or are unknown.
func PortsPerNode(component string) int { return portsPerNode[component] }

// DefaultRanges returns a fresh copy of Apigee's default proxy port ranges,
// keyed by component name and Egress.
func DefaultRanges() map[string]PortRange {
	out := make(map[string]PortRange, len(defaultRanges))
	for k, v := range defaultRanges {
		out[k] = v
	}
	return out
}

// PortKeys lists the keys of the ports section (the components that need proxy
// ports, then Egress) in the fixed order used for assignment and output.
func PortKeys() []string {
	var keys []string
	for _, c := range Components {
		if portsPerNode[string(c)] > 0 {
			keys = append(keys, string(c))
		}
	}
	return append(keys, Egress)
}

// meshTarget reports whether c has mesh listeners (ingress proxies), so that
// an allow rule may lead to it: every component with proxy ports.
// management-server and ui have none.
func meshTarget(c Component) bool {
	return validComponent(c) && portsPerNode[string(c)] > 0
}

// shared reports whether the range r of key is shared: exactly one node's
// share of ports (PortsPerNode(key)), which every member node then uses.
// Apigee advises min = max for egress and openldap.
func shared(key string, r PortRange) bool {
	per := PortsPerNode(key)
	return per > 0 && r.Size() == per
}

// defaultProxyUser is mesh.proxy_user's default for c: consul.user, else
// DefaultProxyUser.
func defaultProxyUser(c *Cluster) string {
	if c.Consul.User != "" {
		return c.Consul.User
	}
	return DefaultProxyUser
}

// validComponent reports whether c is a component the cluster file accepts.
func validComponent(c Component) bool {
	for _, x := range Components {
		if x == c {
			return true
		}
	}
	return false
}

// applyDefaults fills c's empty fields with the defaults and merges the
// default port ranges under c.Ports. Mesh.Enabled and ACL.Enabled are left
// as they are: their default (true) is applied by the parser when the file does not set it, as
// a bool cannot tell "unset" from false.
func applyDefaults(c *Cluster) {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Consul.Version, DefaultConsulVersion)
	def(&c.Consul.Domain, DefaultDomain)
	def(&c.Consul.ConfigDir, DefaultConfigDir)
	def(&c.Consul.TLSDir, DefaultTLSDir)
	def(&c.Consul.DataDir, DefaultDataDir)
	def(&c.Consul.ReloadCommand, DefaultReloadCommand)
	def(&c.Consul.RestartCommand, DefaultRestartCommand)
	def(&c.Consul.LogLevel, DefaultLogLevel)
	def(&c.SSH.User, DefaultSSHUser)
	def(&c.NodeStateDir, DefaultNodeStateDir)
	def(&c.Mesh.UnitDir, DefaultUnitDir)
	def(&c.Mesh.ConsulBinary, DefaultConsulBinary)
	def(&c.Mesh.ProxyUser, defaultProxyUser(c))
	def(&c.ACL.TokenDir, DefaultTokenDir)
	if c.SSH.Port == 0 {
		c.SSH.Port = DefaultSSHPort
	}
	if c.Backups.Keep == 0 {
		c.Backups.Keep = DefaultBackupsKeep
	}
	if c.Ports == nil {
		c.Ports = map[string]PortRange{}
	}
	for k, v := range defaultRanges {
		if _, ok := c.Ports[k]; !ok {
			c.Ports[k] = v
		}
	}
}
