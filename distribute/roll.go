package distribute

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// RollOptions tune RollingRestart.
type RollOptions struct {
	// Concurrency bounds how many client agents restart at once (default
	// Options.Concurrency). Servers always go one at a time.
	Concurrency int
	// Reload runs reload_command instead of restart_command.
	Reload bool
	// Timeout bounds the wait for each server, and then for the clients,
	// to come back healthy (default 2m).
	Timeout time.Duration
}

// RollError says where a rolling restart stopped: Node did not come back
// healthy, and no node after it was touched.
type RollError struct {
	Node string `json:"node"`
	// Done were restarted and came back before Node; Untouched were not
	// restarted.
	Done      []string `json:"done,omitempty"`
	Untouched []string `json:"untouched,omitempty"`
	// Quorum says whether Node's datacenter still had a leader and a
	// majority of voters alive when the restart stopped.
	Quorum bool   `json:"quorum"`
	Leader string `json:"leader,omitempty"`
	Alive  int    `json:"alive_voters"`
	Voters int    `json:"voters"`
	Err    error  `json:"-"`
}

func (e *RollError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rolling restart stopped at %s: %v", e.Node, e.Err)
	if len(e.Untouched) > 0 {
		fmt.Fprintf(&b, "; not touched: %s", strings.Join(e.Untouched, ", "))
	}
	if e.Quorum {
		fmt.Fprintf(&b, "; the cluster still has quorum (leader %s, %d of %d voters alive): fix %s, then rerun", e.Leader, e.Alive, e.Voters, e.Node)
	} else {
		fmt.Fprintf(&b, "; the datacenter has NO quorum (%d of %d voters alive, leader %q): bring %s back first", e.Alive, e.Voters, e.Leader, e.Node)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *RollError) Unwrap() error { return e.Err }

// RollingRestart restarts (or reloads) the agents of nodes without losing
// quorum: servers one at a time, per datacenter, the current leader last,
// each one waited for (its own agent sees a leader, and its datacenter has a
// leader with every server a voter and alive) before the next; then the
// clients, Concurrency at a time, waited for as alive members. A server that
// does not come back within Timeout stops everything before the next server
// is touched, with a *RollError that says whether quorum holds.
func (c *Cluster) RollingRestart(ctx context.Context, nodes []string, o RollOptions) error {
	if o.Timeout <= 0 {
		o.Timeout = defaultWait
	}
	what, run := "restart", c.Restart
	if o.Reload {
		what, run = "reload", c.Reload
	}
	var servers, clients []*inventory.Node
	for _, name := range nodes {
		n, err := c.node(name)
		if err != nil {
			return err
		}
		if n.IsServer() {
			servers = append(servers, n)
		} else {
			clients = append(clients, n)
		}
	}
	var done []string
	untouched := func(from string) []string {
		var out []string
		for _, name := range nodes {
			if name != from && !slices.Contains(done, name) {
				out = append(out, name)
			}
		}
		return out
	}
	for _, dc := range c.s.topo.Cluster.Datacenters {
		var remaining []*inventory.Node
		for _, n := range servers {
			if n.Datacenter == dc.Name {
				remaining = append(remaining, n)
			}
		}
		if len(remaining) == 0 {
			continue
		}
		dcServers := names(c.s.topo.Servers(dc.Name))
		wctx, cancel := context.WithTimeout(ctx, o.Timeout)
		h, err := c.WaitHealthy(wctx, Want{Nodes: dcServers})
		cancel()
		if err != nil {
			return fmt.Errorf("datacenter %s is not healthy before the rolling %s, nothing was touched: %w", dc.Name, what, err)
		}
		for len(remaining) > 0 {
			leader := h.DC(dc.Name).Leader
			i := slices.IndexFunc(remaining, func(n *inventory.Node) bool { return n.Name != leader })
			if i < 0 {
				i = 0 // only the leader is left
			}
			n := remaining[i]
			msg := "server"
			if n.Name == leader {
				msg = "server, the leader (last)"
			}
			c.s.report(n.Name, what, msg, nil)
			err := run(ctx, n.Name)
			if err == nil {
				wctx, cancel := context.WithTimeout(ctx, o.Timeout)
				h, err = c.waitServer(wctx, n, dcServers)
				cancel()
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return c.rollError(ctx, n, done, untouched(n.Name), err)
			}
			c.s.report(n.Name, "done", "back: leader "+h.DC(dc.Name).Leader, nil)
			done = append(done, n.Name)
			remaining = slices.Delete(remaining, i, i+1)
		}
	}
	if len(clients) == 0 {
		return nil
	}
	errs := c.s.forEach(ctx, clients, o.Concurrency, func(ctx context.Context, n *inventory.Node) error {
		return run(ctx, n.Name)
	})
	if len(errs) > 0 {
		var all []error
		for _, n := range clients {
			if err := errs[n.Name]; err != nil {
				all = append(all, err)
			}
		}
		return fmt.Errorf("%s failed on %d client(s): %w", what, len(all), errors.Join(all...))
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	_, err := c.WaitHealthy(wctx, Want{Nodes: names(clients)})
	return err
}

// waitServer waits until the restarted server's own agent answers and sees
// a leader (so it is not an old view of a process that died) and its
// datacenter is healthy again.
func (c *Cluster) waitServer(ctx context.Context, n *inventory.Node, dcServers []string) (*Health, error) {
	var lastErr error
	for {
		var leader string
		lastErr = c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
			var err error
			leader, err = cl.Status().LeaderWithQueryOptions(q)
			return err
		})
		if lastErr == nil && leader != "" {
			break
		}
		if lastErr == nil {
			lastErr = errors.New("its agent sees no leader")
		}
		t := time.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w: %s did not come back: %v", ErrNotHealthy, n.Name, lastErr)
		case <-t.C:
		}
	}
	return c.WaitHealthy(ctx, Want{Nodes: dcServers})
}

// rollError builds the error for a server that did not come back, after
// checking (with a fresh view) whether its datacenter keeps quorum.
func (c *Cluster) rollError(ctx context.Context, n *inventory.Node, done, untouched []string, cause error) error {
	e := &RollError{Node: n.Name, Done: slices.Clone(done), Untouched: untouched, Err: cause}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h, _ := c.health(hctx, healthOpts{dcs: map[string]bool{n.Datacenter: true}})
	if h != nil {
		if d := h.DC(n.Datacenter); d != nil {
			e.Alive, e.Voters, e.Quorum = d.Quorum()
			e.Leader = d.Leader
		}
	}
	c.s.report(n.Name, "restart", "did not come back", e)
	return e
}

func names(nodes []*inventory.Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return out
}
