package consulcfg

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// Intention actions.
const (
	IntentionAllow = "allow"
	IntentionDeny  = "deny"
)

// allowRule lets the nodes running From reach the listeners of To on the
// other nodes; why says where the rule comes from.
type allowRule struct {
	from, to inventory.Component
	why      string
}

// apigeeTable is Apigee's table of the connections its mTLS secures (the
// seed's "Source / Destination" table), one rule per pair. "Loopback" in
// the table needs no intention: a node's own traffic stays on the node.
var apigeeTable = func() []allowRule {
	var out []allowRule
	add := func(from []inventory.Component, to ...inventory.Component) {
		for _, f := range from {
			for _, d := range to {
				out = append(out, allowRule{f, d, string(f) + " -> " + string(d) + " (Apigee table)"})
			}
		}
	}
	c := func(cs ...inventory.Component) []inventory.Component { return cs }
	add(c(inventory.ManagementServer), inventory.Router, inventory.MessageProcessor, inventory.Qpid,
		inventory.OpenLDAP, inventory.Postgres, inventory.ZooKeeper, inventory.Cassandra)
	add(c(inventory.Router, inventory.MessageProcessor), inventory.Qpid, inventory.ZooKeeper, inventory.Cassandra)
	add(c(inventory.ZooKeeper, inventory.Cassandra), inventory.ZooKeeper, inventory.Cassandra)
	add(c(inventory.Postgres), inventory.Postgres, inventory.ZooKeeper, inventory.Cassandra)
	return out
}()

// allowRules is Apigee's table followed by the cluster file's mesh.allow
// rules: what the intentions (and `ports --catalog edge`) allow.
func allowRules(cl *inventory.Cluster) []allowRule {
	rules := slices.Clone(apigeeTable)
	for _, r := range cl.Mesh.Allow {
		why := string(r.From) + " -> " + string(r.To) + " (mesh.allow"
		if r.Line > 0 {
			why += ", line " + strconv.Itoa(r.Line)
		}
		rules = append(rules, allowRule{r.From, r.To, why + ")"})
	}
	return rules
}

// Intentions returns the Connect intentions the cluster's mesh needs:
// `*` -> `*` deny (so that only what is allowed passes) and, for every
// pair of different nodes A and B, an allow from A's egress service to
// each ingress service of B whose component some component of A may reach
// (Apigee's table, then the cluster file's mesh.allow rules). The
// Description of an allow names the first rule that allows it. The list is
// sorted by (source, destination), so `*` -> `*` comes first. It is nil when
// the mesh is disabled. It fails where Render would: a node address that
// is not an IPv4 literal, or missing ports.
func Intentions(t *inventory.Topology, a *inventory.Assignment) ([]Intention, error) {
	if t == nil || t.Cluster == nil {
		return nil, fmt.Errorf("%w: no topology (build it with inventory.Load)", ErrBadTopology)
	}
	if !t.Cluster.Mesh.Enabled {
		return nil, nil
	}
	rules := allowRules(t.Cluster)

	type node struct {
		n      *inventory.Node
		egress string
		lis    []proxyListener // ingress only
	}
	nodes := make([]node, 0, len(t.Nodes))
	var errs []error
	for _, n := range t.Nodes {
		lis, err := nodeListeners(t.Cluster, n, a, true)
		if err != nil {
			errs = append(errs, &NodeError{Node: n.Name, Err: err})
			continue
		}
		x := node{n: n}
		for _, l := range lis {
			if l.Component == inventory.Egress {
				x.egress = l.Service
			} else {
				x.lis = append(x.lis, l)
			}
		}
		nodes = append(nodes, x)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	out := []Intention{{Source: "*", Destination: "*", Action: IntentionDeny,
		Description: "default deny: only the allows of Apigee's table and mesh.allow pass"}}
	for _, src := range nodes {
		for _, dst := range nodes {
			if src.n == dst.n {
				continue // a node's own traffic does not cross the mesh
			}
			for _, l := range dst.lis {
				i := slices.IndexFunc(rules, func(r allowRule) bool {
					return string(r.to) == l.Component && src.n.Has(r.from)
				})
				if i < 0 {
					continue
				}
				out = append(out, Intention{Source: src.egress, Destination: l.Service, Action: IntentionAllow, Description: rules[i].why})
			}
		}
	}
	slices.SortFunc(out, func(x, y Intention) int {
		return cmp.Or(cmp.Compare(x.Source, y.Source), cmp.Compare(x.Destination, y.Destination))
	})
	return out, nil
}
