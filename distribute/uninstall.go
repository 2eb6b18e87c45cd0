package distribute

import (
	"context"

	"github.com/mtlsctl/mtlsctl/consulcfg"
)

// PlanUninstall plans the removal of everything mtlsctl installed on the
// named nodes (all nodes when names is empty), as its manifest on each node
// records it: the proxy units (stopped and disabled), the firewall chains
// and jump rules, the files, and at the end the node state directory. The
// Consul agent itself is left running. Apply then carries the plan out like
// any other, under the node locks and with the journal; the session must
// not be used for another apply afterwards.
func (s *Session) PlanUninstall(ctx context.Context, names []string) (*PlanResult, error) {
	var bundles []consulcfg.Bundle
	for _, n := range s.topo.Nodes {
		if len(names) > 0 && !contains(names, n.Name) {
			continue
		}
		b := consulcfg.Bundle{Node: n.Name, Datacenter: n.Datacenter, Server: n.IsServer()}
		b.Seal()
		bundles = append(bundles, b)
	}
	s.purge = true
	return s.Plan(ctx, bundles, PlanOptions{})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
