package consulapi

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

// ErrNotTouched is wrapped in the per-node error of every node a roll did
// not reach because an earlier node failed.
var ErrNotTouched = errors.New("not touched: an earlier node failed")

// Step is what a roll does to one node: restart or reload its agent, or an
// apply's commit-and-reload.
type Step func(ctx context.Context, node *inventory.Node) error

// RollOptions tune Roll and RollingRestart.
type RollOptions struct {
	// Concurrency bounds how many client agents are stepped at once
	// (default the pool's Concurrency). Servers always go one at a time.
	Concurrency int
	// Reload runs reload_command instead of restart_command (RollingRestart).
	Reload bool
	// Timeout bounds the wait for each server, and then for the clients,
	// to come back healthy (default 2m).
	Timeout time.Duration
	// WaitAfter says whether a server's step makes it leave the cluster for
	// a while (a restart), so that it must be waited for before the next
	// server. Nil: every server.
	WaitAfter func(node string) bool
	// Bootstrap allows datacenters that are not healthy, or have no leader
	// yet, as on a first apply: their servers are stepped in cluster-file
	// order without waiting. Without it a datacenter must be healthy before
	// anything is touched.
	Bootstrap bool
	// WaitClients waits, after the clients' steps, until every client is an
	// alive member.
	WaitClients bool
}

// RollError says where a roll stopped: Node did not come back healthy, and
// no node after it was touched.
type RollError struct {
	Node string `json:"node"`
	// Done were stepped and came back before Node; Untouched were not
	// stepped.
	Done      []string `json:"done,omitempty"`
	Untouched []string `json:"untouched,omitempty"`
	// Quorum says whether Node's datacenter still had a leader and a
	// majority of voters alive when the roll stopped.
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
// quorum (see Roll), waiting for the clients at the end. It returns nil or
// one error: the *RollError of a server that did not come back, or the
// clients' failures joined.
func (c *Cluster) RollingRestart(ctx context.Context, nodes []string, o RollOptions) error {
	what, run := "restart", c.Restart
	if o.Reload {
		what, run = "reload", c.Reload
	}
	o.WaitClients = true
	errs := c.Roll(ctx, nodes, o, func(ctx context.Context, n *inventory.Node) error { return run(ctx, n.Name) })
	return c.rollErr(what, nodes, errs)
}

func (c *Cluster) rollErr(what string, nodes []string, errs map[string]error) error {
	if len(errs) == 0 {
		return nil
	}
	if err := errs[""]; err != nil {
		return err
	}
	var all []error
	for _, name := range nodes {
		err := errs[name]
		if err == nil || errors.Is(err, ErrNotTouched) {
			continue
		}
		var re *RollError
		if errors.As(err, &re) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		all = append(all, err)
	}
	return fmt.Errorf("%s failed on %d node(s): %w", what, len(all), errors.Join(all...))
}

// Roll is mtlsctl's one rolling engine: it runs step on every named node
// without losing quorum. Servers go one at a time, per datacenter in
// cluster-file order, the current leader last; after each server whose
// step needs it (WaitAfter), the server's own agent must see a leader and
// its datacenter must be healthy (leader, every server an alive voter)
// before the next server is touched. Then the clients, Concurrency at a
// time. A server that fails or does not come back stops the roll: its error
// is a *RollError (saying whether quorum holds), and every node not yet
// stepped gets an error wrapping ErrNotTouched. Errors are returned by node
// name; the key "" holds an error about the whole roll (a datacenter not
// healthy before it started, an unknown node).
func (c *Cluster) Roll(ctx context.Context, nodes []string, o RollOptions, step Step) map[string]error {
	if o.Timeout <= 0 {
		o.Timeout = defaultWait
	}
	if o.WaitAfter == nil {
		o.WaitAfter = func(string) bool { return true }
	}
	errs := map[string]error{}
	var servers, clients []*inventory.Node
	for _, name := range nodes {
		n, err := c.node(name)
		if err != nil {
			errs[""] = err
			return errs
		}
		if n.IsServer() {
			servers = append(servers, n)
		} else {
			clients = append(clients, n)
		}
	}
	var done []string
	stopAfter := func(failed string, cause error) map[string]error {
		errs[failed] = cause
		for _, name := range nodes {
			if name != failed && !slices.Contains(done, name) {
				errs[name] = notTouched(name, fmt.Errorf("%w (%s)", ErrNotTouched, failed))
			}
		}
		return errs
	}
	untouched := func(from string) []string {
		var out []string
		for _, name := range nodes {
			if name != from && !slices.Contains(done, name) {
				out = append(out, name)
			}
		}
		return out
	}
	for _, dc := range c.topo.Cluster.Datacenters {
		var remaining []*inventory.Node
		wait := false
		for _, n := range servers {
			if n.Datacenter == dc.Name {
				remaining = append(remaining, n)
				wait = wait || o.WaitAfter(n.Name)
			}
		}
		if len(remaining) == 0 {
			continue
		}
		dcServers := names(c.topo.Servers(dc.Name))
		leader := ""
		if wait {
			var h *Health
			var err error
			if o.Bootstrap {
				// A first start has no leader to keep: look once, briefly.
				hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				h, _ = c.health(hctx, healthOpts{dcs: map[string]bool{dc.Name: true}})
				cancel()
			} else {
				wctx, cancel := context.WithTimeout(ctx, o.Timeout)
				h, err = c.WaitHealthy(wctx, Want{Nodes: dcServers})
				cancel()
			}
			if err != nil {
				errs[""] = fmt.Errorf("datacenter %s is not healthy before the rolling step, nothing was touched: %w", dc.Name, err)
				return errs
			}
			if h != nil && h.DC(dc.Name) != nil {
				leader = h.DC(dc.Name).Leader
			}
		}
		for len(remaining) > 0 {
			i := slices.IndexFunc(remaining, func(n *inventory.Node) bool { return n.Name != leader })
			if i < 0 {
				i = 0 // only the leader is left
			}
			n := remaining[i]
			if n.Name == leader {
				c.p.Report(n.Name, "roll", "server, the leader (last)", nil)
			}
			if err := step(ctx, n); err != nil {
				if ctx.Err() != nil {
					return stopAfter(n.Name, ctx.Err())
				}
				return stopAfter(n.Name, err)
			}
			if leader != "" && o.WaitAfter(n.Name) {
				wctx, cancel := context.WithTimeout(ctx, o.Timeout)
				h, err := c.waitServer(wctx, n, dcServers)
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return stopAfter(n.Name, ctx.Err())
					}
					return stopAfter(n.Name, c.rollError(ctx, n, done, untouched(n.Name), err))
				}
				leader = h.DC(dc.Name).Leader
				c.p.Report(n.Name, "done", "back: leader "+leader, nil)
			}
			done = append(done, n.Name)
			remaining = slices.Delete(remaining, i, i+1)
		}
	}
	if len(clients) == 0 {
		return errs
	}
	cerrs := c.p.ForEach(ctx, clients, o.Concurrency, func(ctx context.Context, n *inventory.Node) error {
		return step(ctx, n)
	})
	for name, err := range cerrs {
		errs[name] = err
	}
	if len(cerrs) > 0 || !o.WaitClients {
		return errs
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if _, err := c.WaitHealthy(wctx, Want{Nodes: names(clients)}); err != nil {
		errs[""] = err
	}
	return errs
}

func notTouched(node string, err error) error {
	return &inventory.NodeError{Node: node, Op: "roll", Err: err}
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
	c.p.Report(n.Name, "restart", "did not come back", e)
	return e
}

func names(nodes []*inventory.Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return out
}
