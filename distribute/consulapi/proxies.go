package consulapi

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// ProxyWant is one Connect service whose proxy must be healthy.
type ProxyWant struct {
	Node       string // the node that runs it
	Datacenter string
	Service    string // the service the proxy serves (its sidecar is what is checked)
}

// WaitProxies waits until every wanted service has a passing Connect
// instance in the catalog: its proxy loaded its certificate and opened its
// public listener, and the agent's check saw it. That is what an upstream
// needs before it can reach the service. It polls every 500 ms, asking
// each node's own agent, until ctx ends (2 minutes when ctx has no
// deadline), and then names what is still not healthy.
func (c *Cluster) WaitProxies(ctx context.Context, want []ProxyWant) error {
	if len(want) == 0 {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultWait)
		defer cancel()
	}
	pending := append([]ProxyWant(nil), want...)
	start := time.Now()
	for {
		var still []ProxyWant
		var lastErr error
		for _, w := range pending {
			var n int
			err := c.query(ctx, w.Node, func(cl *api.Client, q *api.QueryOptions) error {
				q.Datacenter = w.Datacenter
				es, _, err := cl.Health().Connect(w.Service, "", true, q)
				n = len(es)
				return err
			})
			if err != nil {
				lastErr = err
			}
			if err != nil || n == 0 {
				still = append(still, w)
			}
		}
		if len(still) == 0 {
			return nil
		}
		pending = still
		t := time.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			var names []string
			for _, w := range pending {
				names = append(names, w.Service+" on "+w.Node)
			}
			sort.Strings(names)
			if len(names) > 10 {
				names = append(names[:10], fmt.Sprintf("and %d more", len(names)-10))
			}
			msg := fmt.Sprintf("after %s, %d proxies are not healthy: %s", time.Since(start).Round(time.Second), len(pending), strings.Join(names, ", "))
			if lastErr != nil {
				msg += fmt.Sprintf(" (last error: %v)", lastErr)
			}
			return fmt.Errorf("%w: %s; check the units (systemctl status mtlsctl-proxy-...) and their logs on those nodes", ErrNotHealthy, msg)
		case <-t.C:
		}
	}
}

// WaitLeaf waits until node's agent can hand out a Connect leaf
// certificate for service: the datacenter's Connect CA is up (in a
// secondary datacenter, its intermediate is signed by the primary). A
// proxy started before that backs off its certificate watch for a long
// time, so apply waits for this first. It retries every 500 ms until ctx
// ends.
func (c *Cluster) WaitLeaf(ctx context.Context, node, service string) error {
	var last error
	for {
		err := c.query(ctx, node, func(cl *api.Client, q *api.QueryOptions) error {
			leaf, _, err := cl.Agent().ConnectCALeaf(service, q)
			if err == nil && (leaf == nil || leaf.CertPEM == "") {
				err = fmt.Errorf("empty leaf certificate")
			}
			return err
		})
		if err == nil {
			return nil
		}
		last = err
		t := time.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("the agent on %s cannot issue a Connect certificate for %s yet: %v", node, service, last)
		case <-t.C:
		}
	}
}
