package consulcfg

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// Listener is one port a node listens on for mtlsctl's mesh.
type Listener struct {
	// Daemon is what listens: "consul" (the agent), a component name (its
	// ingress proxy), "egress" (the egress proxy: its public listener and
	// one listener per upstream) or, with the mesh disabled, "apigee-mtls".
	Daemon string `json:"daemon"`
	// Service is the Consul service the listener belongs to ("" for the agent).
	Service   string `json:"service,omitempty"`
	Purpose   string `json:"purpose"`
	IPAddress string `json:"ip_address"`
	Port      int    `json:"port"`
	Protocol  string `json:"protocol"` // "tcp" or "tcp/udp"
	// TargetPort is the component port an ingress proxy forwards to, or the
	// remote component port an egress upstream carries (0 when none).
	TargetPort int `json:"target_port,omitempty"`
}

// NodeReport is one node's listeners.
type NodeReport struct {
	Node       string     `json:"node"`
	Datacenter string     `json:"datacenter"`
	Address    string     `json:"address"`
	Server     bool       `json:"server"`
	Listeners  []Listener `json:"listeners"`
}

// Report is the port report: every node's listeners, in topology order.
type Report struct {
	Cluster string       `json:"cluster"`
	Nodes   []NodeReport `json:"nodes"`
}

// PortReport builds the port report. Components whose ports are missing from
// the assignment are left out (Render reports them as errors).
func PortReport(t *inventory.Topology, a *inventory.Assignment) Report {
	r := Report{Nodes: make([]NodeReport, 0, len(t.Nodes))}
	if t.Cluster != nil {
		r.Cluster = t.Cluster.Name
	}
	mesh := t.Cluster != nil && t.Cluster.Mesh.Enabled
	var mt *meshTopology
	if mesh {
		mt = newMeshTopology(t)
	}
	for _, n := range t.Nodes {
		lis, _ := nodeListeners(t.Cluster, n, a, mesh) // what is assigned; Render reports what is missing
		var ups []upstream
		if mesh && len(lis) > 0 {
			ups, _ = mt.upstreams(n)
		}
		r.Nodes = append(r.Nodes, nodeReport(n, lis, ups))
	}
	return r
}

// reportHost is how the report names a node's address: the IP literal, or
// for a go-sockaddr template (known only on the node) its SSH host or name.
func reportHost(n *inventory.Node) string {
	if !n.IsTemplate() {
		return n.Address
	}
	if n.SSHHost != "" {
		return n.SSHHost
	}
	return n.Name
}

// nodeReport lists the node's listeners: the agent's, then each proxy
// listener (with the mesh on, the egress proxy's public listener is
// followed by its upstreams).
func nodeReport(n *inventory.Node, lis []proxyListener, ups []upstream) NodeReport {
	host := reportHost(n)
	const lo = "127.0.0.1"
	remote := lo // servers also serve DNS, gRPC and HTTPS on their address
	if n.IsServer() {
		remote = host
	}
	agent := func(port int, proto, purpose, ip string) Listener {
		return Listener{Daemon: "consul", Purpose: purpose, IPAddress: ip, Port: port, Protocol: proto}
	}
	var ls []Listener
	if n.IsServer() {
		ls = append(ls, agent(portServerRPC, "tcp", "consul server RPC", host))
	}
	ls = append(ls, agent(portSerfLAN, "tcp/udp", "consul LAN gossip", host))
	if n.IsServer() {
		ls = append(ls, agent(portSerfWAN, "tcp/udp", "consul WAN gossip", host))
	}
	ls = append(ls,
		agent(portHTTP, "tcp", "consul HTTP API (local only)", lo),
		agent(portGRPC, "tcp", "consul gRPC (proxy configuration)", remote),
		agent(portHTTPS, "tcp", "consul HTTPS API (client certificate required)", remote),
		agent(portDNS, "tcp/udp", "consul DNS", remote),
	)
	for _, l := range lis {
		switch {
		case l.Component != inventory.Egress:
			ls = append(ls, Listener{Daemon: l.Component, Service: l.Service, Purpose: l.Purpose, IPAddress: host, Port: l.Port, Protocol: "tcp", TargetPort: l.Target})
		case l.Class == "": // the disabled mesh's Connect-native apigee-mtls service
			ls = append(ls, Listener{Daemon: EgressService, Service: l.Service, Purpose: l.Purpose, IPAddress: host, Port: l.Port, Protocol: "tcp"})
		default:
			ls = append(ls, Listener{Daemon: inventory.Egress, Service: l.Service, Purpose: l.Purpose, IPAddress: lo, Port: l.Port, Protocol: "tcp"})
			for _, u := range ups {
				ls = append(ls, Listener{
					Daemon: inventory.Egress, Service: l.Service,
					Purpose:   "upstream to " + u.Service + " (nat OUTPUT sends " + u.Dest.String() + ":" + strconv.Itoa(u.Target) + " here)",
					IPAddress: u.Bind.String(), Port: l.Port, Protocol: "tcp", TargetPort: u.Target,
				})
			}
		}
	}
	return NodeReport{Node: n.Name, Datacenter: n.Datacenter, Address: host, Server: n.IsServer(), Listeners: ls}
}

// WriteTable writes the report as an aligned text table, one row per listener.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tDC\tADDRESS\tCOMPONENT\tPORT\tPROTO\tPURPOSE")
	for _, n := range r.Nodes {
		for _, l := range n.Listeners {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, n.Datacenter, l.IPAddress, l.Daemon, strconv.Itoa(l.Port), l.Protocol, l.Purpose)
		}
	}
	return tw.Flush()
}

// WriteJSON writes the report in mtlsctl's own shape: the cluster and a list
// of nodes with their listeners.
func (r Report) WriteJSON(w io.Writer) error {
	b, err := marshalJSON(r)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// apigeeHost, apigeeDaemon and apigeeListener are the shape of Apigee's
// `apigee-mtls report`.
type apigeeHost struct {
	DatacenterMember string                   `json:"datacenter_member"`
	Daemons          map[string]*apigeeDaemon `json:"daemons"`
}

type apigeeDaemon struct {
	Ingress   bool             `json:"ingress"`
	Name      string           `json:"name"`
	Listeners []apigeeListener `json:"listeners"`
}

type apigeeListener struct {
	Purpose   string `json:"purpose"`
	IPAddress string `json:"ip_address"`
	Port      int    `json:"port"`
}

// apigeeDaemonType is the key Apigee's report gives a daemon:
// "consul-server" or "consul-agent", "<component>-ingress" or "egress".
func apigeeDaemonType(n NodeReport, l Listener) (key string, ingress bool) {
	switch l.Daemon {
	case "consul":
		if n.Server {
			return "consul-server", false
		}
		return "consul-agent", false
	case inventory.Egress, EgressService:
		return inventory.Egress, false
	}
	return l.Daemon + "-ingress", true
}

// WriteApigee writes the report in the shape of Apigee's `apigee-mtls
// report`: an object keyed by host IP (for a node whose address is a
// go-sockaddr template, its SSH host or name), each with datacenter_member
// and daemons, an object keyed by daemon type ("consul-server" or
// "consul-agent", "zookeeper-ingress", ..., "egress"). Each daemon says
// whether it is an ingress proxy, its name (the Consul service of its first
// listener, e.g. zk-2181-10-0-0-1; for the agent its type) and its
// listeners. Keys come out sorted.
func (r Report) WriteApigee(w io.Writer) error {
	out := make(map[string]*apigeeHost, len(r.Nodes))
	for _, n := range r.Nodes {
		h := out[n.Address]
		if h == nil {
			h = &apigeeHost{DatacenterMember: n.Datacenter, Daemons: map[string]*apigeeDaemon{}}
			out[n.Address] = h
		}
		for _, l := range n.Listeners {
			key, ingress := apigeeDaemonType(n, l)
			d := h.Daemons[key]
			if d == nil {
				d = &apigeeDaemon{Ingress: ingress, Name: l.Service}
				if l.Daemon == "consul" {
					d.Name = key
				}
				h.Daemons[key] = d
			}
			d.Listeners = append(d.Listeners, apigeeListener{Purpose: l.Purpose, IPAddress: l.IPAddress, Port: l.Port})
		}
	}
	b, err := marshalJSON(out)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
