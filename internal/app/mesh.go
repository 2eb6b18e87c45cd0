package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// desiredIntentions are the intentions the cluster file and the port
// assignment call for (nil when the mesh is off).
func (r *remote) desiredIntentions() ([]consulcfg.Intention, error) {
	if !r.t.Cluster.Mesh.Enabled {
		return nil, nil
	}
	return consulcfg.Intentions(r.t, r.ports)
}

// planIntentions compares the wanted intentions with the cluster's. When
// no agent answers (the first apply: Consul is not running yet) it returns
// nil and the reason.
func (r *remote) planIntentions(ctx context.Context) (*consulapi.IntentionPlan, []consulcfg.Intention, error) {
	want, err := r.desiredIntentions()
	if err != nil || want == nil {
		return nil, nil, err
	}
	if r.skipLive {
		return nil, want, errSkipLive
	}
	p, err := r.live().PlanIntentions(ctx, want, r.t.Cluster.Name)
	return p, want, err
}

// errSkipLive is why intentions were not read with --skip-live.
var errSkipLive = errors.New("not read: --skip-live")

// writeIntentionPlan prints the intention part of a plan.
func writeIntentionPlan(w io.Writer, p *consulapi.IntentionPlan, want []consulcfg.Intention, err error) {
	switch {
	case want == nil:
		return
	case errors.Is(err, errSkipLive):
		fmt.Fprintf(w, "\nintentions: %d wanted; not compared with the cluster's (--skip-live, or a sandbox: no agent to ask)\n", len(want))
		return
	case err != nil:
		fmt.Fprintf(w, "\nintentions: %d wanted; the cluster's could not be read (%s): apply writes them once Consul answers\n", len(want), summarizeErr(err))
		return
	case p.Changes() == 0 && len(p.Conflicts) == 0:
		fmt.Fprintf(w, "\nintentions: up to date (%d)\n", len(want))
		return
	}
	fmt.Fprintf(w, "\nintentions: %s\n", p.Summary())
	for _, l := range p.Lines() {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

// syncIntentions writes the intentions after an apply (the agents are up):
// allows first, then the default deny, then the stale ones go.
func (r *remote) syncIntentions(ctx context.Context, c Common) error {
	p, want, err := r.planIntentions(ctx)
	if err != nil {
		return fmt.Errorf("intentions: %w", err)
	}
	if want == nil {
		return nil
	}
	if p.Changes() > 0 || len(p.Conflicts) > 0 {
		res, err := r.live().ApplyIntentions(ctx, p)
		c.printf("intentions: %s\n", res.Summary())
		if err != nil {
			return fmt.Errorf("intentions: %w", err)
		}
	}
	// The secondary datacenters' proxies authorize against their own copy.
	return r.live().WaitIntentionsReplicated(ctx, r.t.Cluster.Name)
}

// waitProxies waits until every proxy of the selected nodes is healthy in
// the catalog (loaded its certificate, listening), so that the mesh works
// when apply returns.
func (r *remote) waitProxies(ctx context.Context, c Common) error {
	ctx, cancel := context.WithTimeout(ctx, proxyWait)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var want []consulapi.ProxyWant
	total := 0
	for _, b := range r.bundles {
		if b.Mesh == nil {
			continue
		}
		var addrs []string
		for _, p := range b.Mesh.Proxies {
			addrs = append(addrs, p.Listen)
			want = append(want, consulapi.ProxyWant{Node: b.Node, Datacenter: b.Datacenter, Service: p.Service})
		}
		total += len(addrs)
		wg.Go(func() {
			if err := r.sess.WaitListening(ctx, b.Node, addrs); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) == 0 {
		// Listening is not enough: an upstream finds a proxy through the
		// catalog, which the agents update a moment later.
		if err := r.live().WaitProxies(ctx, want); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the mesh is not up after %s: %w; check the proxy units (systemctl status mtlsctl-proxy-*) and their logs there",
			proxyWait, errors.Join(errs...))
	}
	if total > 0 {
		c.printf("mesh: %d proxies listening (%s)\n", total, time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

// proxyWait bounds how long apply waits for the proxies to listen.
const proxyWait = 2 * time.Minute

// VerifyOptions are the options of `verify`.
type VerifyOptions struct {
	// Hold is how long a connection that gets no answer must stay open to
	// count as carried (a component that waits for its client to speak).
	Hold time.Duration
	// Timeout bounds each connection attempt.
	Timeout time.Duration
	// PerNode bounds the probes running at once from one node.
	PerNode int
}

// MeshPath is one (source node, destination listener) probe of `verify`.
type MeshPath struct {
	From    string                 `json:"from"`
	To      string                 `json:"to"`
	Addr    string                 `json:"endpoint"` // the destination's address and component port
	Service string                 `json:"service"`  // the destination's ingress service
	Class   string                 `json:"class"`
	Allowed bool                   `json:"allowed"` // the intentions allow it
	Result  distribute.ProbeResult `json:"result"`
	OK      bool                   `json:"ok"`
	Problem string                 `json:"problem,omitempty"`
}

// VerifyNode is one source node's row in `verify`.
type VerifyNode struct {
	Node    string      `json:"node"`
	Allowed int         `json:"allowed_ok"`
	Denied  int         `json:"denied_refused"`
	Failed  int         `json:"failed"`
	Paths   []*MeshPath `json:"paths"`
}

// VerifyResult is `verify -o json`.
type VerifyResult struct {
	OK    bool          `json:"ok"`
	Nodes []*VerifyNode `json:"nodes"`
}

// meshPaths lists, for every source node, every allowed path to another
// node's meshed listener and one denied sample per destination class.
func meshPaths(t *inventory.Topology, bundles []consulcfg.Bundle, want []consulcfg.Intention, sources []string) map[string][]*MeshPath {
	allowed := map[[2]string]bool{}
	for _, i := range want {
		if i.Action == "allow" {
			allowed[[2]string{i.Source, i.Destination}] = true
		}
	}
	egress := map[string]string{}
	for _, b := range bundles {
		if b.Mesh == nil {
			continue
		}
		for _, p := range b.Mesh.Proxies {
			if !p.Ingress {
				egress[b.Node] = p.Service
			}
		}
	}
	out := map[string][]*MeshPath{}
	for _, src := range sources {
		eg := egress[src]
		if eg == "" {
			continue
		}
		sampled := map[string]bool{}
		for _, b := range bundles {
			if b.Node == src || b.Mesh == nil {
				continue
			}
			n := t.Node(b.Node)
			for _, p := range b.Mesh.Proxies {
				if !p.Ingress {
					continue
				}
				_, port, err := net.SplitHostPort(p.Target)
				if err != nil {
					continue
				}
				ok := allowed[[2]string{eg, p.Service}]
				if !ok {
					if sampled[p.Class] {
						continue
					}
					sampled[p.Class] = true
				}
				out[src] = append(out[src], &MeshPath{From: src, To: b.Node, Addr: net.JoinHostPort(n.Address, port),
					Service: p.Service, Class: p.Class, Allowed: ok})
			}
		}
	}
	return out
}

// Verify proves the mesh from every node: each allowed path carries a
// connection to the destination's component port (through the node's nat
// rules, its egress proxy and the destination's ingress proxy), and one
// sample of each denied class is refused. It exits non-zero on any failure
// and names the broken path.
func Verify(ctx context.Context, c Common, d DistOptions, o VerifyOptions) error {
	d = c.sandboxDist(d)
	if d.sandbox != "" {
		return fmt.Errorf("%s is a sandbox's cluster file: verify opens connections through the mesh's proxies, and the sandbox nodes run none (their `consul` and `systemctl` only record calls); try it on a real cluster or the e2e test cluster", c.Inventory)
	}
	if o.Hold <= 0 {
		o.Hold = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.PerNode <= 0 {
		o.PerNode = 8
	}
	r, err := openRemote(c, d)
	if err != nil {
		return err
	}
	defer r.close()
	if !r.t.Cluster.Mesh.Enabled {
		return errors.New("the mesh is off in the cluster file (mesh: {enabled: false}): nothing to verify")
	}
	want, err := r.desiredIntentions()
	if err != nil {
		return err
	}
	var sources []string
	for _, b := range r.bundles {
		sources = append(sources, b.Node)
	}
	paths := meshPaths(r.t, r.all, want, sources)
	res := &VerifyResult{OK: true}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, src := range sources {
		vn := &VerifyNode{Node: src, Paths: paths[src]}
		res.Nodes = append(res.Nodes, vn)
		wg.Go(func() {
			sem := make(chan struct{}, o.PerNode)
			var nwg sync.WaitGroup
			for _, p := range vn.Paths {
				sem <- struct{}{}
				nwg.Go(func() {
					defer func() { <-sem }()
					p.Result = r.sess.Probe(ctx, p.From, p.Addr, o.Hold, o.Timeout)
					judge(p)
				})
			}
			nwg.Wait()
			mu.Lock()
			defer mu.Unlock()
			for _, p := range vn.Paths {
				switch {
				case !p.OK:
					vn.Failed++
					res.OK = false
				case p.Allowed:
					vn.Allowed++
				default:
					vn.Denied++
				}
			}
		})
	}
	wg.Wait()
	if c.JSON {
		if err := c.writeJSON("verify", res); err != nil {
			return err
		}
	} else {
		writeVerify(c.stdout(), res)
	}
	if !res.OK {
		failed := 0
		for _, n := range res.Nodes {
			failed += n.Failed
		}
		return fmt.Errorf("%w: %d mesh path(s) failed", ErrReported, failed)
	}
	return nil
}

// judge decides whether a probe is what the path should give.
func judge(p *MeshPath) {
	r := p.Result
	if p.Allowed {
		p.OK = r.Passed()
		switch r.Outcome {
		case distribute.ProbeClosed:
			p.Problem = "the mesh closed an allowed connection: is " + unitFor(p.Service) + " running on " + p.To + ", the component listening on its port, and the allow intention in place?"
		case distribute.ProbeTimeout:
			p.Problem = "no connection: the nat rule on " + p.From + " did not redirect it (is the firewall loaded there?) and the plain connection was dropped"
		case distribute.ProbeRefused:
			p.Problem = "refused before the mesh: no upstream listener on " + p.From + " (is its egress proxy running?)"
		case distribute.ProbeError:
			p.Problem = "the node could not be asked: " + r.Detail
		}
		return
	}
	// A denied path must not carry the connection.
	p.OK = !r.Passed() && r.Outcome != distribute.ProbeError
	switch {
	case r.Passed():
		p.Problem = "a denied path carried the connection: check the intentions (default deny) and the destination's firewall"
	case r.Outcome == distribute.ProbeError:
		p.Problem = "the node could not be asked: " + r.Detail
	}
}

func unitFor(service string) string { return "mtlsctl-proxy-" + service + ".service" }

func writeVerify(w io.Writer, res *VerifyResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tALLOWED OK\tDENIED REFUSED\tFAILED")
	for _, n := range res.Nodes {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", n.Node, n.Allowed, n.Denied, n.Failed)
	}
	tw.Flush()
	var bad []*MeshPath
	for _, n := range res.Nodes {
		for _, p := range n.Paths {
			if !p.OK {
				bad = append(bad, p)
			}
		}
	}
	sort.SliceStable(bad, func(i, j int) bool { return bad[i].From < bad[j].From })
	if len(bad) == 0 {
		fmt.Fprintln(w, "\nevery allowed path carried its connection through the mesh; every denied sample was refused")
		return
	}
	fmt.Fprintf(w, "\n%d broken path(s):\n", len(bad))
	for _, p := range bad {
		kind := "allowed"
		if !p.Allowed {
			kind = "denied"
		}
		fmt.Fprintf(w, "  %s -> %s %s (%s, %s): %s after %s: %s\n", p.From, p.To, p.Addr, p.Service, kind, p.Result.Outcome,
			p.Result.Took.Round(time.Millisecond), p.Problem)
	}
}

// UninstallOptions are the options of `uninstall`.
type UninstallOptions struct {
	Yes         bool
	ForceUnlock distribute.Unlock // --force-unlock[=RUN]
}

// Uninstall removes exactly what mtlsctl installed, after a plan the user
// can read: the intentions it made (while the agents still answer), then
// on every node, under its lock and with the journal, the proxy units, the
// firewall chains and jumps, its files and its node state. The agents keep
// running; the state directory on the admin machine is kept.
func Uninstall(ctx context.Context, c Common, d DistOptions, o UninstallOptions) error {
	d = c.sandboxDist(d)
	r, err := openRemoteForce(c, d, o.ForceUnlock)
	if err != nil {
		return err
	}
	defer r.close()
	if !o.Yes && !c.Interactive {
		return errors.New("uninstall changes nodes: pass --yes to confirm when not on a terminal")
	}
	lock, err := lockState(r.st, "uninstall", o.ForceUnlock.Any())
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if recovered, err := r.sess.Recover(ctx); err != nil {
		return err
	} else if recovered != "" {
		c.printf("recovered an interrupted apply: %s\n", recovered)
	}
	stop := c.startProgress(r, d)
	plan, err := r.sess.PlanUninstall(ctx, d.Nodes)
	stop()
	if err != nil {
		return err
	}
	out := c.stdout()
	if c.JSON {
		out = c.stderr()
	}
	writePlan(out, plan)
	whole := len(d.Nodes) == 0 && r.t.Cluster.Mesh.Enabled && !d.SkipLive
	acl := len(d.Nodes) == 0 && r.t.Cluster.ACL.Enabled && !d.SkipLive
	if acl {
		fmt.Fprintf(out, "\nacl: every token and policy mtlsctl made for cluster %s is deleted; the management token is kept (%s)\n", r.t.Cluster.Name, r.st.ManagementTokenFile())
	}
	switch {
	case whole:
		fmt.Fprintf(out, "\nintentions: every intention mtlsctl made for cluster %s is deleted\n", r.t.Cluster.Name)
	case r.t.Cluster.Mesh.Enabled && d.SkipLive:
		fmt.Fprintf(out, "\nintentions: left alone (--skip-live, or a sandbox: no agent to ask)\n")
	case r.t.Cluster.Mesh.Enabled:
		fmt.Fprintf(out, "\nintentions: left alone (--nodes: they are the whole cluster's)\n")
	}
	if plan.Err() != nil {
		return fmt.Errorf("%w: fix the unreachable node(s) first, or limit the uninstall with --nodes", ErrReported)
	}
	if !plan.Changes() && !whole && !acl {
		c.printf("nothing to uninstall\n")
		return nil
	}
	if !o.Yes && !c.confirm(fmt.Sprintf("Remove mtlsctl's files, proxies and firewall rules from %d node(s)?", countPlanChanges(plan))) {
		return errors.New("uninstall cancelled: nothing was changed")
	}
	if whole {
		ir, err := r.live().DeleteIntentions(ctx, r.t.Cluster.Name)
		switch {
		case err != nil:
			c.printf("intentions: could not delete them all (%s); the rest stay in Consul until the servers are gone\n", summarizeErr(err))
		default:
			c.printf("intentions: %s\n", ir.Summary())
		}
	}
	if acl {
		n, err := r.live().DeleteACL(ctx)
		switch {
		case err != nil:
			c.printf("acl: could not delete every token (%s); delete the rest with the management token\n", summarizeErr(err))
		default:
			c.printf("acl: deleted %d token(s) and mtlsctl's policies; the anonymous token has no policy again\n", n)
		}
	}
	stop = c.startProgress(r, d)
	res, err := r.sess.Apply(ctx, plan)
	stop()
	if res != nil {
		if c.JSON {
			if werr := c.writeJSON("uninstall", res); werr != nil {
				return werr
			}
		} else {
			writeApply(c.stdout(), res)
		}
	}
	if err != nil {
		return reported(err)
	}
	c.printf("\nuninstalled: the Consul agents still run with the configuration they loaded; stop them (systemctl stop consul) or give them a new one\n")
	return nil
}
