package inventory

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ServicePort is a port that an Edge for Private Cloud component, or Consul,
// listens on itself. No proxy port range may include one: a proxy there
// would not bind (or would take the component's port), and the nat rules
// would send the component's own traffic to the wrong place.
type ServicePort struct {
	Port      int
	Component string // who listens: an Edge component, or "consul"
	Purpose   string
}

// ServicePorts is the table of the components' own ports: Consul's (see
// ConsulPorts) and Edge for Private Cloud's defaults, those the mesh carries
// (consulcfg's listener tables) and the ones it leaves alone (JMX, RPC,
// health checks, the UI). Ports below 1024 are left out: ranges must be
// above them anyway.
var ServicePorts = []ServicePort{
	{8300, "consul", "server RPC"},
	{8301, "consul", "LAN gossip"},
	{8302, "consul", "WAN gossip"},
	{8500, "consul", "HTTP API"},
	{8502, "consul", "gRPC"},
	{8503, "consul", "HTTPS API"},
	{8600, "consul", "DNS"},
	{2181, string(ZooKeeper), "client connections"},
	{2888, string(ZooKeeper), "quorum"},
	{3888, string(ZooKeeper), "leader election"},
	{7000, string(Cassandra), "inter-node"},
	{7199, string(Cassandra), "JMX"},
	{9042, string(Cassandra), "CQL native protocol"},
	{9160, string(Cassandra), "Thrift clients"},
	{10389, string(OpenLDAP), "LDAP"},
	{5432, string(Postgres), "PostgreSQL"},
	{8084, string(Postgres), "Postgres Server API"},
	{1103, string(Postgres), "Postgres Server JMX"},
	{4530, string(Postgres), "Postgres Server RPC"},
	{5672, string(Qpid), "AMQP broker"},
	{8083, string(Qpid), "Qpid Server API"},
	{1102, string(Qpid), "Qpid Server JMX"},
	{4529, string(Qpid), "Qpid Server RPC"},
	{8082, string(MessageProcessor), "management API"},
	{8998, string(MessageProcessor), "Router to Message Processor traffic"},
	{4528, string(MessageProcessor), "RPC"},
	{1101, string(MessageProcessor), "JMX"},
	{8081, string(Router), "management API"},
	{4527, string(Router), "RPC"},
	{15999, string(Router), "load balancer health check"},
	{9001, string(Router), "default virtual host"},
	{1100, string(Router), "JMX"},
	{8080, string(ManagementServer), "management API"},
	{1099, string(ManagementServer), "JMX"},
	{4526, string(ManagementServer), "RPC"},
	{9000, string(UI), "Edge UI"},
}

// collidingPorts returns the service ports inside key's range r that a
// proxy would take. A linear range may hold those that Apigee's own default
// range for key holds (OpenLDAP's 10389 is inside Postgres's 10300-10399):
// AssignPorts never hands a service port out. A shared range gives every
// member all of its ports, so none is exempt there.
func collidingPorts(key string, r PortRange) []ServicePort {
	var out []ServicePort
	for _, sp := range servicePortsIn(r) {
		if !shared(key, r) && defaultRanges[key].Contains(sp.Port) {
			continue
		}
		out = append(out, sp)
	}
	return out
}

// isServicePort reports whether p is in ServicePorts.
func isServicePort(p int) bool {
	for _, sp := range ServicePorts {
		if sp.Port == p {
			return true
		}
	}
	return false
}

// servicePortsIn returns the entries of ServicePorts inside r, by port.
func servicePortsIn(r PortRange) []ServicePort {
	var out []ServicePort
	for _, sp := range ServicePorts {
		if r.Contains(sp.Port) {
			out = append(out, sp)
		}
	}
	slices.SortFunc(out, func(a, b ServicePort) int { return a.Port - b.Port })
	return out
}

// describeServicePorts writes "8080 (management-server management API),
// 8081 (router management API)", at most four, then "and N more".
func describeServicePorts(sps []ServicePort) string {
	const shown = 4
	var parts []string
	for i, sp := range sps {
		if i == shown {
			parts = append(parts, "and "+strconv.Itoa(len(sps)-shown)+" more")
			break
		}
		parts = append(parts, fmt.Sprintf("%d (%s %s)", sp.Port, sp.Component, sp.Purpose))
	}
	return strings.Join(parts, ", ")
}
