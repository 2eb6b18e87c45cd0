package consulcfg

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// ErrNoToken means ACLs are on and a node's agent or one of its services
// has no token in the Input (the state directory has not made it yet).
var ErrNoToken = errors.New("no ACL token")

// DefaultTokenDir is where proxies' token files go when the topology was
// built without inventory's defaults.
const DefaultTokenDir = "/etc/mtlsctl/acl"

// NodeTokens are the secret IDs of one node's ACL tokens: its agent's, and
// one per service it registers (by service ID), which the service's proxy
// also uses.
type NodeTokens struct {
	Agent    string
	Services map[string]string
	// Replication is set on the servers of secondary datacenters: the
	// token their Connect CA and intention replication use with the
	// primary.
	Replication string
}

// ACLTokenTTL is how long an agent caches what a token may do (and that a
// token does not exist): short, so that tokens made at the bootstrap are
// honoured soon after agents first tried them, and deleted ones stop
// working soon.
const ACLTokenTTL = 5 * time.Second

// ServiceRef is one service a node registers.
type ServiceRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// NodeServices lists, per node, the services its bundle registers (each
// needs a token of its own when ACLs are on). Nodes whose ports are missing
// are reported as nodeListeners reports them.
func NodeServices(t *inventory.Topology, a *inventory.Assignment) (map[string][]ServiceRef, error) {
	out := make(map[string][]ServiceRef, len(t.Nodes))
	var errs []error
	for _, n := range t.Nodes {
		lis, err := nodeListeners(t.Cluster, n, a, t.Cluster.Mesh.Enabled)
		if err != nil {
			errs = append(errs, &NodeError{Node: n.Name, Err: err})
			continue
		}
		refs := make([]ServiceRef, len(lis))
		for i, l := range lis {
			refs[i] = ServiceRef{ID: l.ID, Name: l.Service}
		}
		out[n.Name] = refs
	}
	return out, errors.Join(errs...)
}

// TokenFile is the path of a proxy's token file on the node.
func TokenFile(dir, serviceID string) string { return path.Join(dir, serviceID+".token") }

// agentACL is the agent config's acl stanza (the same keys in 1.6 and 1.13):
// default deny; an agent cut off from the servers keeps using the
// permissions it has cached (extend-cache) rather than denying everything;
// tokens set through the API are not persisted: the files are the truth.
type agentACL struct {
	Enabled       bool           `json:"enabled"`
	DefaultPolicy string         `json:"default_policy"`
	DownPolicy    string         `json:"down_policy"`
	TokenTTL      string         `json:"token_ttl"`
	Tokens        agentACLTokens `json:"tokens"`
}

type agentACLTokens struct {
	Agent       string `json:"agent"`
	Replication string `json:"replication,omitempty"`
}

// nodeTokens returns n's tokens, checking that every service has one.
func nodeTokens(in Input, n *inventory.Node, lis []proxyListener) (NodeTokens, error) {
	nt, ok := in.Tokens[n.Name]
	if !ok || nt.Agent == "" {
		return NodeTokens{}, fmt.Errorf("%w for the agent: run `mtlsctl generate` to make it", ErrNoToken)
	}
	for _, l := range lis {
		if nt.Services[l.ID] == "" {
			return NodeTokens{}, fmt.Errorf("%w for service %s: run `mtlsctl generate` to make it", ErrNoToken, l.ID)
		}
	}
	t := in.Topology
	if t.MultiDC() && n.IsServer() && n.Datacenter != t.Cluster.Datacenters[0].Name && nt.Replication == "" {
		return NodeTokens{}, fmt.Errorf("%w for replication from the primary datacenter: run `mtlsctl generate` to make it", ErrNoToken)
	}
	return nt, nil
}

// secretRE matches the JSON string value of a key that holds a secret: the
// gossip key ("encrypt") and ACL tokens ("agent" under acl.tokens, a
// service's "token").
var secretRE = regexp.MustCompile(`("(encrypt|agent|replication|token)"\s*:\s*")((?:[^"\\]|\\.)*)(")`)

// isTokenKey says whether a secretRE key holds an ACL token.
func isTokenKey(k string) bool { return k != "encrypt" }

// tokenFileContent is what a proxy's token file holds.
func tokenFileContent(secret string) []byte { return []byte(strings.TrimSpace(secret) + "\n") }
