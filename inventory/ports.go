package inventory

import (
	"fmt"
	"slices"
)

// AssignPorts gives every node its proxy ports: for each component it runs,
// PortsPerNode(component) ports from the component's range, and one egress
// port. Ports are unique across the whole cluster (all datacenters).
//
// It is stable against prev (the assignment recorded last time, may be nil):
// a node keeps its ports for a component while they are still inside the
// (possibly changed) range, still the right count and not claimed twice. Other
// nodes get the lowest free ports of the range, walking components in
// PortKeys order and nodes in topology order. Ports of removed nodes and
// components are freed. The result is deterministic. A range without enough
// free ports gives an error wrapping ErrPortsExhausted.
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
				if !used[next] {
					used[next] = true
					ports = append(ports, next)
				}
			}
			if len(ports) < per {
				need := (len(pending) - i) * per
				free := len(ports)
				return nil, fmt.Errorf("%s range %s: %d node(s) still need %d port(s) but only %d are free (%d per node): widen ports.%s, e.g. %d-%d: %w",
					key, r, len(pending)-i, need, free, per, key, r.Min, suggestMax(r.Min, len(members)*per), ErrPortsExhausted)
			}
			out.Nodes[n.Name][key] = ports
		}
	}
	return out, nil
}

// keepable reports whether a previous port list can be kept as is.
func keepable(old []int, per int, r PortRange, used map[int]bool) bool {
	if len(old) != per || per == 0 {
		return false
	}
	seen := map[int]bool{}
	for _, p := range old {
		if !r.Contains(p) || used[p] || seen[p] {
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
