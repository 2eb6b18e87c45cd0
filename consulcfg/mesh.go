package consulcfg

// The mesh (Consul Connect) part of a bundle. consulcfg decides every name,
// unit, rule and intention; distribute only carries out what Bundle.Mesh
// lists (see doc.go).

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
