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
	// sidecar proxy) or "apigee-mtls" (the egress proxy).
	Daemon string `json:"daemon"`
	// Service is the Consul service the listener belongs to ("" for the agent).
	Service   string `json:"service,omitempty"`
	Purpose   string `json:"purpose"`
	IPAddress string `json:"ip_address"`
	Port      int    `json:"port"`
	Protocol  string `json:"protocol"` // "tcp" or "tcp/udp"
	// TargetPort is the component's own port a sidecar forwards to (0 when none).
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
	for _, n := range t.Nodes {
		lis, _ := nodeListeners(n, a) // what is assigned; Render reports what is missing
		r.Nodes = append(r.Nodes, nodeReport(n, lis))
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

func nodeReport(n *inventory.Node, lis []proxyListener) NodeReport {
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
		daemon := l.Component
		if l.Component == inventory.Egress {
			daemon = EgressService
		}
		ls = append(ls, Listener{Daemon: daemon, Service: l.Service, Purpose: l.Purpose, IPAddress: host, Port: l.Port, Protocol: "tcp", TargetPort: l.Target})
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
	DatacenterMember string         `json:"datacenter_member"`
	Daemons          []apigeeDaemon `json:"daemons"`
}

type apigeeDaemon struct {
	Name      string           `json:"name"`
	Listeners []apigeeListener `json:"listeners"`
}

type apigeeListener struct {
	Purpose   string `json:"purpose"`
	IPAddress string `json:"ip_address"`
	Port      int    `json:"port"`
}

// WriteApigee writes the report in the shape of Apigee's `apigee-mtls
// report`: an object keyed by host IP (for a node whose address is a
// go-sockaddr template, its SSH host or name), each with datacenter_member
// and the daemons with their listeners. Keys come out sorted.
func (r Report) WriteApigee(w io.Writer) error {
	out := make(map[string]*apigeeHost, len(r.Nodes))
	for _, n := range r.Nodes {
		h := out[n.Address]
		if h == nil {
			h = &apigeeHost{DatacenterMember: n.Datacenter, Daemons: []apigeeDaemon{}}
			out[n.Address] = h
		}
		for _, l := range n.Listeners {
			al := apigeeListener{Purpose: l.Purpose, IPAddress: l.IPAddress, Port: l.Port}
			if i := len(h.Daemons) - 1; i >= 0 && h.Daemons[i].Name == l.Daemon {
				h.Daemons[i].Listeners = append(h.Daemons[i].Listeners, al)
				continue
			}
			h.Daemons = append(h.Daemons, apigeeDaemon{Name: l.Daemon, Listeners: []apigeeListener{al}})
		}
	}
	b, err := marshalJSON(out)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
