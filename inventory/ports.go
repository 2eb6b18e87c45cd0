package inventory

import (
	"fmt"
	"slices"
	"strings"
)

// AssignPorts gives every node its proxy ports: for each component it runs,
// PortsPerNode(component) ports from the component's range, and one egress
// port.
//
// A range of exactly PortsPerNode(key) ports is shared: every member node
// gets all of its ports, in order (Apigee advises min = max for egress and
// openldap). Any other range is linear: its ports are unique across the whole
// cluster (all datacenters), never a component's own port (ServicePorts),
// and the assignment is stable against prev (the
// assignment recorded last time, may be nil): a node keeps its ports for a
// component while they are still inside the (possibly changed) range, still
// the right count and not claimed twice. Other nodes get the lowest free
// ports of the range, walking components in PortKeys order and nodes in
// topology order. Ports of removed nodes and components are freed. The result
// is deterministic. A linear range without enough free ports gives an error
// wrapping ErrPortsExhausted; ranges that give one node the same port twice
// (overlapping ranges, or a Consul port: validation refuses both) give an
// error too.
func AssignPorts(t *Topology, prev *Assignment) (*Assignment, error) {
	if t == nil || t.Cluster == nil {
		return nil, fmt.Errorf("assign ports: no topology")
	}
	out := &Assignment{Nodes: map[string]map[string][]int{}}
	for _, n := range t.Nodes {
		out.Nodes[n.Name] = map[string][]int{}
	}
	for _, key := range PortKeys() {
		r, ok := t.Cluster.Ports[key]
		if !ok {
			r = defaultRanges[key]
		}
		per := PortsPerNode(key)
		var members []*Node
		for _, n := range t.Nodes {
			if key == Egress || n.Has(Component(key)) {
				members = append(members, n)
			}
		}
		if shared(key, r) {
			for _, n := range members {
				ports := make([]int, 0, per)
				for p := r.Min; p <= r.Max; p++ {
					ports = append(ports, p)
				}
				out.Nodes[n.Name][key] = ports
			}
			continue
		}
		used := map[int]bool{}
		var pending []*Node
		// First keep every still-valid previous assignment, so that a new
		// node early in the file cannot take the ports of an existing one.
		for _, n := range members {
			old := prev.Ports(n.Name, key)
			if keepable(old, per, r, used) {
				kept := slices.Clone(old)
				for _, p := range kept {
					used[p] = true
				}
				out.Nodes[n.Name][key] = kept
				continue
			}
			pending = append(pending, n)
		}
		next := r.Min
		for i, n := range pending {
			ports := make([]int, 0, per)
			for ; len(ports) < per && next <= r.Max; next++ {
				if !used[next] && !isServicePort(next) {
					used[next] = true
					ports = append(ports, next)
				}
			}
			if len(ports) < per {
				need := (len(pending) - i) * per
				free := len(ports)
				return nil, fmt.Errorf("%s range %s: %d node(s) still need %d port(s) but only %d are free (%d per node): widen ports.%s, e.g. %d-%d, or %s: %w",
					key, r, len(pending)-i, need, free, per, key, r.Min, suggestMax(r.Min, len(members)*per), shareAdvice(key, r.Min), ErrPortsExhausted)
			}
			out.Nodes[n.Name][key] = ports
		}
	}
	if err := checkNodePorts(t, out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkNodePorts refuses an assignment that gives one node the same port for
// two keys, or a Consul port.
func checkNodePorts(t *Topology, a *Assignment) error {
	for _, n := range t.Nodes {
		owner := map[int]string{}
		for _, p := range ConsulPorts {
			owner[p] = "Consul"
		}
		for _, key := range PortKeys() {
			for _, p := range a.Nodes[n.Name][key] {
				if o, dup := owner[p]; dup {
					return fmt.Errorf("node %s would get port %d for both %s and %s: give ports.%s its own range, outside the other proxy ranges and Consul's ports (%s)",
						n.Name, p, o, key, key, joinInts(ConsulPorts))
				}
				owner[p] = key
			}
		}
	}
	return nil
}

// keepable reports whether a previous port list can be kept as is.
func keepable(old []int, per int, r PortRange, used map[int]bool) bool {
	if len(old) != per || per == 0 {
		return false
	}
	seen := map[int]bool{}
	for _, p := range old {
		if !r.Contains(p) || used[p] || seen[p] || isServicePort(p) {
			return false
		}
		seen[p] = true
	}
	return true
}

// Equal reports whether a and b assign the same ports to the same nodes
// (a nil Assignment equals an empty one).
func (a *Assignment) Equal(b *Assignment) bool {
	var an, bn map[string]map[string][]int
	if a != nil {
		an = a.Nodes
	}
	if b != nil {
		bn = b.Nodes
	}
	if len(an) != len(bn) {
		return false
	}
	for node, am := range an {
		bm, ok := bn[node]
		if !ok || len(am) != len(bm) {
			return false
		}
		for comp, ap := range am {
			bp, ok := bm[comp]
			if !ok || !slices.Equal(ap, bp) {
				return false
			}
		}
	}
	return true
}

// All returns every port assigned to node, sorted.
func (a *Assignment) All(node string) []int {
	if a == nil {
		return nil
	}
	var out []int
	for _, ps := range a.Nodes[node] {
		out = append(out, ps...)
	}
	slices.Sort(out)
	return out
}

// PortChange is one node's component whose proxy ports differ between two
// assignments: Old is nil for a port newly assigned (a new node or
// component), New is nil for one given up (a node or component removed).
type PortChange struct {
	Node      string `json:"node"`
	Component string `json:"component"`
	Old       []int  `json:"old,omitempty"`
	New       []int  `json:"new,omitempty"`
}

// Changes lists, node by node and component by component (sorted), what
// differs from prev to a: what generate records and plan previews.
func (a *Assignment) Changes(prev *Assignment) []PortChange {
	var an, pn map[string]map[string][]int
	if a != nil {
		an = a.Nodes
	}
	if prev != nil {
		pn = prev.Nodes
	}
	keys := map[[2]string]bool{}
	for node, m := range an {
		for comp := range m {
			keys[[2]string{node, comp}] = true
		}
	}
	for node, m := range pn {
		for comp := range m {
			keys[[2]string{node, comp}] = true
		}
	}
	var out []PortChange
	for k := range keys {
		o, n := pn[k[0]][k[1]], an[k[0]][k[1]]
		if !slices.Equal(o, n) {
			out = append(out, PortChange{Node: k[0], Component: k[1], Old: o, New: n})
		}
	}
	slices.SortFunc(out, func(x, y PortChange) int {
		if x.Node != y.Node {
			return strings.Compare(x.Node, y.Node)
		}
		return strings.Compare(x.Component, y.Component)
	})
	return out
}
