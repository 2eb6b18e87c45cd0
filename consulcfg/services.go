package consulcfg

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// listenerSpec is one proxy listener a component needs when the mesh is
// disabled: the i-th assigned port of the component is the port of a
// registered (never run) sidecar that would forward to the component's own
// port Target on 127.0.0.1. The mesh uses meshListeners instead (mesh.go).
type listenerSpec struct {
	Service string // Consul service name, shared by every node that runs it
	Target  int    // the Apigee component's own port
	Purpose string
}

// legacyListeners maps each component to its listeners when the mesh is
// disabled (`mesh: {enabled: false}`), in port order:
// a component's first assigned port serves the first entry, and so on. The
// counts match Apigee's table of ports per node (ZooKeeper 3, Cassandra 2,
// OpenLDAP 1, Postgres 3, Qpid 2, Message Processor 2, Router 2); the target
// ports are Edge for Private Cloud's defaults:
//
//	component          port  service                       what it carries
//	zookeeper          2181  zookeeper                     client connections
//	zookeeper          2888  zookeeper-quorum              followers to the leader
//	zookeeper          3888  zookeeper-election            leader election
//	cassandra          9042  cassandra                     CQL native protocol
//	cassandra          9160  cassandra-thrift              Thrift clients
//	openldap          10389  openldap                      LDAP
//	postgres           5432  postgres                      SQL clients
//	postgres           8084  postgres-server               Apigee postgres-server management API
//	postgres           5432  postgres-replication          standby streaming replication
//	qpid               5672  qpid                          AMQP broker
//	qpid               8083  qpid-server                   Apigee qpid-server management API
//	message-processor  8998  message-processor             Router to Message Processor traffic
//	message-processor  8082  message-processor-management  management API
//	router             8081  router                        management API
//	router            15999  router-health                 health check
//
// Management Server and UI take no proxy ports. Cassandra's inter-node port
// 7000 is not proxied (Apigee mTLS does not encrypt it either).
var legacyListeners = map[inventory.Component][]listenerSpec{
	inventory.ZooKeeper: {
		{"zookeeper", 2181, "ZooKeeper client connections (2181)"},
		{"zookeeper-quorum", 2888, "ZooKeeper quorum: followers to leader (2888)"},
		{"zookeeper-election", 3888, "ZooKeeper leader election (3888)"},
	},
	inventory.Cassandra: {
		{"cassandra", 9042, "Cassandra CQL native protocol (9042)"},
		{"cassandra-thrift", 9160, "Cassandra Thrift clients (9160)"},
	},
	inventory.OpenLDAP: {
		{"openldap", 10389, "OpenLDAP (10389)"},
	},
	inventory.Postgres: {
		{"postgres", 5432, "PostgreSQL clients (5432)"},
		{"postgres-server", 8084, "Postgres Server management API (8084)"},
		{"postgres-replication", 5432, "PostgreSQL standby replication (5432)"},
	},
	inventory.Qpid: {
		{"qpid", 5672, "Qpid AMQP broker (5672)"},
		{"qpid-server", 8083, "Qpid Server management API (8083)"},
	},
	inventory.MessageProcessor: {
		{"message-processor", 8998, "Router to Message Processor traffic (8998)"},
		{"message-processor-management", 8082, "Message Processor management API (8082)"},
	},
	inventory.Router: {
		{"router", 8081, "Router management API (8081)"},
		{"router-health", 15999, "Router health check (15999)"},
	},
}

// EgressService is the Consul service name of the Connect-native
// apigee-mtls service that every node registers when the mesh is disabled.
// With the mesh on, each node's egress service is "egress-<dashed address>".
const EgressService = "apigee-mtls"

const egressPurpose = "egress proxy: local components' outbound traffic, sent on over mTLS"

// proxyListener is one assigned port on one node.
type proxyListener struct {
	Component string // component name, or inventory.Egress
	Service   string
	ID        string // Consul service id, unique cluster-wide
	Class     string // mesh only: "<short>-<component port>" or "egress"
	Target    int    // the component's own port; 0 for the egress listener
	Port      int
	Purpose   string
}

// nodeListeners returns the node's proxy listeners in a fixed order
// (inventory.Components order, then egress), and an error wrapping ErrNoPorts
// when a component the node runs, or the egress proxy, lacks its ports (the
// listeners that are assigned come back too: the port report shows them).
// With the mesh on the listeners follow meshListeners and are named after
// the node's address, which must then be an IPv4 literal.
func nodeListeners(cl *inventory.Cluster, n *inventory.Node, a *inventory.Assignment, mesh bool) ([]proxyListener, error) {
	var out []proxyListener
	var errs []error
	taken := map[int]string{}
	for _, p := range []int{portServerRPC, portSerfLAN, portSerfWAN, portHTTP, portGRPC, portHTTPS, portDNS} {
		taken[p] = "the consul agent"
	}
	var dashed string
	if mesh {
		addr, err := meshAddress(n)
		if err != nil {
			return nil, err
		}
		dashed = dashedAddress(addr)
	}
	for _, comp := range inventory.Components {
		var specs []listenerSpec
		if mesh {
			specs = meshListenerSpecs(cl, comp, dashed)
		} else {
			specs = legacyListeners[comp]
		}
		if len(specs) == 0 || !n.Has(comp) {
			continue
		}
		ports := a.Ports(n.Name, string(comp))
		if len(ports) < len(specs) {
			errs = append(errs, fmt.Errorf("%w: component %s has %d ports, needs %d (re-run the port assignment)", ErrNoPorts, comp, len(ports), len(specs)))
		}
		for i, s := range specs {
			if mesh {
				// A component listens on its own ports (often on every
				// address): a proxy port equal to one would never bind, and
				// the nat rules would capture the proxies' own connections.
				taken[s.Target] = "the component port of " + s.Service
			}
			if i >= len(ports) {
				continue
			}
			l := proxyListener{
				Component: string(comp), Service: s.Service, ID: s.Service + "-" + n.Name,
				Target: s.Target, Port: ports[i], Purpose: s.Purpose,
			}
			if mesh {
				l.ID, l.Class = s.Service, meshClass(comp, s.Target)
			}
			out = append(out, l)
		}
	}
	if eg := a.Ports(n.Name, inventory.Egress); len(eg) > 0 {
		l := proxyListener{
			Component: inventory.Egress, Service: EgressService, ID: EgressService + "-" + n.Name,
			Port: eg[0], Purpose: egressPurpose,
		}
		if mesh {
			name := egressServiceName(dashed)
			l.Service, l.ID, l.Class, l.Purpose = name, name, inventory.Egress, meshEgressPurpose
		}
		out = append(out, l)
	} else {
		errs = append(errs, fmt.Errorf("%w: no egress port (re-run the port assignment)", ErrNoPorts))
	}
	for _, l := range out {
		switch {
		case l.Port < 1 || l.Port > 65535:
			errs = append(errs, fmt.Errorf("%w: %s port %d is not a TCP port", ErrNoPorts, l.ID, l.Port))
		case taken[l.Port] != "":
			errs = append(errs, fmt.Errorf("%w: %s port %d is already used by %s", ErrNoPorts, l.ID, l.Port, taken[l.Port]))
		default:
			taken[l.Port] = l.ID
		}
	}
	return out, errors.Join(errs...)
}

type servicesFile struct {
	Services []serviceDef `json:"services"`
}

type serviceDef struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"`
	Port    int               `json:"port"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	Connect serviceConnect    `json:"connect"`
	// Token registers the service (and its sidecar, which inherits it)
	// when ACLs are on: a token with the service's identity.
	Token string `json:"token,omitempty"`
}

type serviceConnect struct {
	Native         bool        `json:"native,omitempty"`
	SidecarService *sidecarDef `json:"sidecar_service,omitempty"`
}

// sidecarDef is a nested sidecar registration. Address and Checks are set
// only with the mesh on (the disabled mesh's file stays as it was).
type sidecarDef struct {
	// Address is where the built-in proxy binds its public listener: it
	// takes the registered sidecar address (connect/proxy/config.go,
	// AgentConfigWatcher), 0.0.0.0 when there is none.
	Address string         `json:"address,omitempty"`
	Port    int            `json:"port"`
	Proxy   proxyDef       `json:"proxy"`
	Checks  []sidecarCheck `json:"checks,omitempty"`
}

type proxyDef struct {
	LocalServiceAddress string        `json:"local_service_address"`
	LocalServicePort    int           `json:"local_service_port"`
	Upstreams           []upstreamDef `json:"upstreams,omitempty"`
}

type upstreamDef struct {
	DestinationName  string `json:"destination_name"`
	Datacenter       string `json:"datacenter,omitempty"`
	LocalBindAddress string `json:"local_bind_address"`
	LocalBindPort    int    `json:"local_bind_port"`
}

// sidecarCheck replaces the sidecar's default check, which dials
// 127.0.0.1:<port> and so stays critical for a listener bound to the node
// address (and then upstreams find no healthy instance).
type sidecarCheck struct {
	Name         string `json:"name"`
	AliasService string `json:"alias_service,omitempty"`
	TCP          string `json:"tcp,omitempty"`
	Interval     string `json:"interval,omitempty"`
	// Status is the check's state until its first run. Passing, because
	// every `consul reload` (each rotation reloads) registers the services
	// again, and a check that started critical would take every upstream
	// to the service down until it ran.
	Status string `json:"status"`
}

// servicesConfig renders the disabled mesh's services: one per listener: a
// component listener is the component's own port with a sidecar whose
// public listener is the assigned port; the egress listener is the
// apigee-mtls service itself, marked Connect-native. Nothing runs the
// sidecars and there are no upstreams.
func servicesConfig(n *inventory.Node, lis []proxyListener, tokens map[string]string) ([]byte, error) {
	f := servicesFile{Services: make([]serviceDef, 0, len(lis))}
	for _, l := range lis {
		d := serviceDef{
			ID:    l.ID,
			Name:  l.Service,
			Tags:  []string{"mtlsctl", l.Component},
			Meta:  map[string]string{"component": l.Component, "node": n.Name},
			Token: tokens[l.ID],
		}
		if l.Component == inventory.Egress {
			d.Port = l.Port
			d.Connect.Native = true
		} else {
			d.Port = l.Target
			d.Connect.SidecarService = &sidecarDef{
				Port:  l.Port,
				Proxy: proxyDef{LocalServiceAddress: "127.0.0.1", LocalServicePort: l.Target},
			}
		}
		f.Services = append(f.Services, d)
	}
	return marshalJSON(f)
}

// meshService is the registration of one mesh listener: an ingress service
// whose sidecar listens on the node address at the proxy port and delivers
// to 127.0.0.1 at the component port, or the node's egress service whose
// sidecar carries the upstreams. Its public listener is 127.0.0.1:E, so
// only local, and no intention ever allows anything to an egress service;
// its local service port is 1 (there is no local service behind it).
func meshService(n *inventory.Node, l proxyListener, ups []upstream, token string) serviceDef {
	d := serviceDef{
		ID:    l.ID,
		Name:  l.Service,
		Tags:  []string{"mtlsctl", l.Component},
		Meta:  map[string]string{"component": l.Component, "node": n.Name},
		Token: token,
	}
	sc := &sidecarDef{Port: l.Port}
	if l.Component == inventory.Egress {
		d.Port = l.Port
		sc.Address = loopback
		sc.Proxy = proxyDef{LocalServiceAddress: loopback, LocalServicePort: 1, Upstreams: make([]upstreamDef, len(ups))}
		for i, u := range ups {
			sc.Proxy.Upstreams[i] = upstreamDef{
				DestinationName: u.Service, Datacenter: u.Datacenter,
				LocalBindAddress: u.Bind.String(), LocalBindPort: l.Port,
			}
		}
	} else {
		d.Port = l.Target
		sc.Address = n.Address
		sc.Proxy = proxyDef{LocalServiceAddress: loopback, LocalServicePort: l.Target}
	}
	// Not a TCP check on the listener (Consul's default): the built-in
	// proxy dials the local component for every connection it accepts,
	// before any handshake, so a check every few seconds would open an
	// empty connection to ZooKeeper, Postgres, ... each time (and the
	// egress proxy would log a failed dial each time). Each service has one
	// instance, on its own node, so a health check could not steer traffic
	// elsewhere anyway: the sidecar follows its service (an alias check)
	// and its node's membership. apply checks that each proxy listens, and
	// `mtlsctl verify` that every path carries connections.
	sc.Checks = []sidecarCheck{{Name: "Connect sidecar for " + d.ID, AliasService: d.ID, Status: "passing"}}
	d.Connect.SidecarService = sc
	return d
}

// meshServicesConfig renders the node's mesh services (lis: ingress
// listeners, then egress) and returns each one's registration as compact
// JSON too, in the same order: a proxy's digest covers its registration, so
// that one proxy's change does not restart the others.
func meshServicesConfig(n *inventory.Node, lis []proxyListener, ups []upstream, tokens map[string]string) ([]byte, [][]byte, error) {
	f := servicesFile{Services: make([]serviceDef, len(lis))}
	regs := make([][]byte, len(lis))
	for i, l := range lis {
		f.Services[i] = meshService(n, l, ups, tokens[l.ID])
		reg, err := json.Marshal(f.Services[i])
		if err != nil {
			return nil, nil, err
		}
		regs[i] = reg
	}
	b, err := marshalJSON(f)
	return b, regs, err
}
