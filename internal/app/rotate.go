package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/internal/rotate"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// RotateOptions are the options of `rotate gossip|certs|ca`.
type RotateOptions struct {
	Yes         bool              // skip the confirmation prompt
	ForceUnlock distribute.Unlock // --force-unlock[=RUN]: node locks of runs that are over
	// GossipWait bounds how long `rotate gossip` waits for every member to
	// hold the new key (0: the default, scaled to the cluster's size).
	GossipWait time.Duration
	// The reissued leaves (rotate certs, rotate ca): "" and 0 are the
	// defaults of generate (ecdsa-p256; the cluster file's certs.days, else 365).
	KeyType  string
	CertDays int
	// The new CA (rotate ca): "" and 0 are ca's defaults.
	CAKeyType       string
	CADays          int
	NameConstraints bool
}

// leafOptions are the generate options of the leaves a rotation reissues.
func (r RotateOptions) leafOptions(t *inventory.Topology) ca.GenerateOptions {
	return ca.GenerateOptions{
		Leaf:     ca.IssueOptions{KeyType: r.KeyType},
		LeafDays: cmp.Or(r.CertDays, t.Cluster.Certs.Days),
	}
}

// logw is where per-phase progress goes: stdout, or stderr under -o json.
func (c Common) logw() io.Writer {
	if c.JSON {
		return c.stderr()
	}
	return c.stdout()
}

// rotation is what every rotate command sets up: the topology, the state
// (locked for the whole rotation) and a handle on the live cluster.
type rotation struct {
	c    Common
	d    DistOptions
	r    RotateOptions
	t    *inventory.Topology
	st   *ca.State
	lock *ca.Lock
	rem  *remote // one connection per node for the whole rotation
	cl   *consulapi.Cluster
}

func startRotation(ctx context.Context, c Common, d DistOptions, r RotateOptions, what, question string) (*rotation, error) {
	if !r.Yes {
		if !c.Interactive {
			return nil, fmt.Errorf("%s changes the nodes: pass --yes to confirm when not on a terminal", what)
		}
		if !c.confirm(question) {
			return nil, fmt.Errorf("%s cancelled: nothing was changed", what)
		}
	}
	rem, err := openRemoteForce(c, d, r.ForceUnlock)
	if err != nil {
		return nil, err
	}
	if err := rem.requireReachable(ctx, c, what); err != nil {
		rem.close()
		return nil, err
	}
	lock, err := lockState(rem.st, what, r.ForceUnlock.Any())
	if err != nil {
		rem.close()
		return nil, err
	}
	return &rotation{c: c, d: d, r: r, t: rem.t, st: rem.st, lock: lock, rem: rem, cl: rem.sess.Live()}, nil
}

// requireReachable inspects every selected node, in parallel, on the
// session's connections, before a rotation changes anything: a rotation
// that found a node down half way would leave new credentials in the state
// and on some nodes only. Each unreachable node's error is printed once;
// the error returned names them and says nothing was changed.
func (r *remote) requireReachable(ctx context.Context, c Common, what string) error {
	// The errors are printed below, not by the progress lines as well.
	plain := r.rep.set(nil)
	r.rep.set(failuresReported{to: plain})
	res, err := r.sess.Plan(ctx, r.bundles, distribute.PlanOptions{})
	r.rep.set(plain)
	if err != nil {
		return err
	}
	var down []string
	for _, np := range res.Nodes {
		if np.Err != nil {
			down = append(down, np.Node)
			fmt.Fprintf(c.logw(), "%-12s %-8s %s\n", np.Node, "unreachable", np.Error)
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("%w: %s refused: %d of %d node(s) could not be reached (%s); nothing was changed, on the nodes or in the state directory: bring them back (or leave them out with --nodes where the command allows it), then run it again",
			ErrReported, what, len(down), len(res.Nodes), strings.Join(down, ", "))
	}
	return nil
}

func (x *rotation) close() {
	x.rem.close()
	x.lock.Unlock()
}

// push renders every selected node's bundle from the state as it is now
// and applies it (stage everywhere, verify, commit, reload: certificate,
// CA and gossip-key changes need no restart), holding the rotation's lock,
// on the rotation's connections.
func (x *rotation) push(ctx context.Context, phase string) ([]consulcfg.Bundle, error) {
	if err := x.rem.rebundle(x.c, x.d); err != nil {
		return nil, err
	}
	bundles := x.rem.bundles
	fmt.Fprintf(x.c.logw(), "%s: pushing %d node(s)\n", phase, len(bundles))
	recovered, err := x.rem.sess.Recover(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply: %s", summarizeErr(err))
	}
	if recovered != "" {
		fmt.Fprintf(x.c.logw(), "recovered an interrupted apply: %s\n", recovered)
	}
	plan, err := x.rem.sess.Plan(ctx, bundles, distribute.PlanOptions{})
	if err != nil {
		return nil, err
	}
	res, err := x.rem.sess.Apply(ctx, plan)
	if res != nil && !x.c.JSON {
		writeApply(x.c.stdout(), res)
	}
	if err != nil {
		return nil, fmt.Errorf("apply: %s", summarizeErr(err))
	}
	return bundles, nil
}

// verify waits until the cluster is healthy and every pushed node's agent
// serves the certificate of its bundle, verified against the bundle's CA.
func (x *rotation) verify(ctx context.Context, phase string, bundles []consulcfg.Bundle) (*consulapi.Health, error) {
	if x.d.sandbox != "" {
		// No agent to ask: the rotation said so when it started.
		return &consulapi.Health{}, nil
	}
	x.cl.SetBundles(bundles)
	nodes := make([]string, 0, len(bundles))
	for _, b := range bundles {
		nodes = append(nodes, b.Node)
	}
	wctx, cancel := context.WithTimeout(ctx, VerifyTimeout)
	defer cancel()
	start := time.Now()
	h, err := x.cl.WaitHealthy(wctx, consulapi.Want{Nodes: nodes, Certs: true})
	if err != nil {
		return h, err
	}
	want, served := map[string]string{}, map[string]string{}
	for _, n := range h.Nodes {
		if n.Cert != nil {
			want[n.Node], served[n.Node] = n.Cert.Expected, n.Cert.Served
		}
	}
	for _, name := range nodes {
		if _, ok := want[name]; !ok {
			want[name] = "(issued certificate)"
		}
	}
	if err := rotate.VerifyServed(want, served); err != nil {
		return h, err
	}
	for _, name := range nodes {
		fmt.Fprintf(x.c.logw(), "%-12s %-8s serves %s (verified against its CA bundle)\n", name, phase, served[name])
	}
	fmt.Fprintf(x.c.logw(), "%s: cluster healthy, %d agent(s) verified after %s\n", phase, len(nodes), time.Since(start).Round(100*time.Millisecond))
	return h, nil
}

// agent picks the first server whose local API answers, for the keyring
// operations.
func (x *rotation) agent(ctx context.Context) (*rotate.Client, string, error) {
	var errs []error
	for _, n := range x.t.Nodes {
		if !n.IsServer() {
			continue
		}
		cl, err := x.cl.API(ctx, n.Name)
		if err == nil {
			if _, err = cl.Status().Leader(); err == nil {
				return &rotate.Client{API: cl}, n.Name, nil
			}
		}
		errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
	}
	return nil, "", fmt.Errorf("no Consul server answered on 127.0.0.1:8500: %w", errors.Join(errs...))
}

// RotateGossip rotates the gossip key: a new key into the state, then
// through the keyring API (via one server) install, wait for every member
// of every pool, use, remove the old key; then a normal apply writes the new
// `encrypt` into every node's config. Re-running resumes an interrupted
// rotation.
func RotateGossip(ctx context.Context, c Common, d DistOptions, r RotateOptions) error {
	d = c.sandboxDist(d)
	if len(d.Nodes) > 0 {
		return Usagef("rotate gossip changes every member's keyring: --nodes is not allowed")
	}
	x, err := startRotation(ctx, c, d, r, "rotate gossip", "Rotate the gossip key of every Consul agent?")
	if err != nil {
		return err
	}
	defer x.close()
	if x.d.sandbox != "" {
		return x.sandboxGossip(ctx)
	}
	agent, via, err := x.agent(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.logw(), "gossip keyring operations through node %s (one Serf query per pool, up to %s each when a member does not answer)\n",
		via, rotate.QueryTimeout(len(x.t.Nodes), rotate.LANGossipInterval))
	res, err := rotate.Gossip(ctx, rotate.GossipOptions{
		State:    x.st,
		Agent:    agent,
		Expected: rotate.ExpectedFromTopology(x.t),
		Apply: func(ctx context.Context) error {
			bundles, err := x.push(ctx, "gossip config")
			if err != nil {
				return err
			}
			_, err = x.verify(ctx, "gossip config", bundles)
			return err
		},
		Wait: r.GossipWait,
		Log:  c.logw(),
	})
	if err != nil {
		return err
	}
	if c.JSON {
		return c.writeJSON("rotate-gossip", res)
	}
	fmt.Fprintf(c.stdout(), "\ngossip key rotated: %s -> %s in %s; every member holds only the new key\n", res.Old, res.New, res.Duration.Round(time.Millisecond))
	return nil
}

// CertsResult is what `rotate certs` did, per node.
type CertsResult struct {
	Nodes    []CertsNode   `json:"nodes"`
	Duration time.Duration `json:"duration_ns"`
}

// CertsNode is one node's certificate before and after `rotate certs`.
type CertsNode struct {
	Node   string `json:"node"`
	Old    string `json:"old_fingerprint"`
	New    string `json:"new_fingerprint"`
	Served string `json:"served_fingerprint"`
}

// RotateCerts reissues the leaf certificates of the selected nodes (all
// without --nodes) from the same CA, pushes them with a reload (no
// restart) and verifies that each agent now serves its new certificate.
func RotateCerts(ctx context.Context, c Common, d DistOptions, r RotateOptions) error {
	d = c.sandboxDist(d)
	nodes, err := nodeNames(c, d.Nodes)
	if err != nil {
		return err
	}
	what := "every node"
	if len(nodes) > 0 {
		what = strings.Join(nodes, ", ")
	}
	x, err := startRotation(ctx, c, d, r, "rotate certs", fmt.Sprintf("Reissue and reload the certificates of %s?", what))
	if err != nil {
		return err
	}
	defer x.close()
	if x.d.sandbox != "" {
		c.sandboxSkips("the wait for a healthy cluster and the check that each agent serves its new certificate",
			"reissues the certificates in the state and pushes them to the nodes (the reload goes to the stand-in systemctl)")
	}
	start := time.Now()
	before, err := x.st.Credentials(x.t)
	if err != nil {
		return err
	}
	gen := r.leafOptions(x.t)
	gen.ReissueAll, gen.Reissue = len(nodes) == 0, nodes
	rep, err := x.st.Generate(x.t, gen)
	if err != nil {
		return err
	}
	res := &CertsResult{}
	for _, n := range rep.Nodes {
		if n.Action == ca.Kept {
			continue
		}
		fmt.Fprintf(c.logw(), "%-12s %-8s new certificate serial %s, expires %s\n", n.Node, "reissue", n.Serial, n.NotAfter.Format(time.DateOnly))
		res.Nodes = append(res.Nodes, CertsNode{Node: n.Node, Old: ca.CertFingerprint(before.Leaves[n.Node].Cert.Raw), New: n.Fingerprint})
	}
	bundles, err := x.push(ctx, "certs")
	if err != nil {
		return fmt.Errorf("rotate certs: the new certificates are in the state but not on every node: %w; re-run `mtlsctl apply` to finish", err)
	}
	h, err := x.verify(ctx, "certs", bundles)
	if err != nil {
		return fmt.Errorf("rotate certs: pushed, but not verified: %w", err)
	}
	for i := range res.Nodes {
		if nh := h.Node(res.Nodes[i].Node); nh != nil && nh.Cert != nil {
			res.Nodes[i].Served = nh.Cert.Served
		}
	}
	res.Duration = time.Since(start)
	if c.JSON {
		return c.writeJSON("rotate-certs", res)
	}
	if x.d.sandbox != "" {
		fmt.Fprintf(c.stdout(), "\n%d certificate(s) reissued and pushed, in %s; not verified as served: the sandbox runs no agent\n", len(res.Nodes), res.Duration.Round(time.Millisecond))
		return nil
	}
	fmt.Fprintf(c.stdout(), "\n%d certificate(s) rotated and served, in %s (reload, no restart)\n", len(res.Nodes), res.Duration.Round(time.Millisecond))
	return nil
}

// nodeNames splits --nodes values (comma-separated) and checks them
// against the cluster file.
func nodeNames(c Common, lists []string) ([]string, error) {
	if len(lists) == 0 {
		return nil, nil
	}
	t, err := inventory.Load(c.Inventory)
	if err != nil {
		return nil, err
	}
	return parseNodes(t, lists)
}

// RotateCA rolls the cluster over to a new CA in phases, each pushed,
// reloaded and verified before the next: bundle old+new, leaves from the
// new CA, old CA dropped. The old CA key stays archived in the state.
// Re-running resumes an interrupted rollover.
func RotateCA(ctx context.Context, c Common, d DistOptions, r RotateOptions) error {
	d = c.sandboxDist(d)
	if len(d.Nodes) > 0 {
		return Usagef("rotate ca changes every node: --nodes is not allowed")
	}
	x, err := startRotation(ctx, c, d, r, "rotate ca", "Roll every node over to a new CA (three pushes with reloads)?")
	if err != nil {
		return err
	}
	defer x.close()
	if x.d.sandbox != "" {
		c.sandboxSkips("the health wait and served-certificate check after each of its three pushes",
			"makes the new CA in the state and pushes the three phases (trust old+new, new leaves, drop the old CA) to the nodes")
	}
	var pushed []consulcfg.Bundle
	res, err := rotate.RotateCA(ctx, rotate.CAOptions{
		State:    x.st,
		Topology: x.t,
		NewCA: ca.CAOptions{
			KeyType:         r.CAKeyType,
			Days:            r.CADays,
			Domain:          x.t.Cluster.Consul.Domain,
			NameConstraints: r.NameConstraints,
		},
		Generate: r.leafOptions(x.t),
		Apply: func(ctx context.Context, phase string) error {
			b, err := x.push(ctx, "ca "+phase)
			pushed = b
			return err
		},
		Verify: func(ctx context.Context, phase string) error {
			_, err := x.verify(ctx, "ca "+phase, pushed)
			return err
		},
		Log: c.logw(),
	})
	if err != nil {
		return err
	}
	if c.JSON {
		return c.writeJSON("rotate-ca", res)
	}
	if x.d.sandbox != "" {
		fmt.Fprintf(c.stdout(), "\nCA rotated in the state and on the nodes' files: %s -> %s in %s; no agent verified it: the sandbox runs none\n", res.Old, res.New, res.Duration.Round(time.Millisecond))
		return nil
	}
	fmt.Fprintf(c.stdout(), "\nCA rotated: %s -> %s in %s; every agent serves a leaf of the new CA and trusts only it\n", res.Old, res.New, res.Duration.Round(time.Millisecond))
	return nil
}

// sandboxGossip is `rotate gossip` on a sandbox: there is no keyring to
// install the new key into, use it in and remove the old one from, so the
// new key goes straight into the state as the primary (the old one kept as
// previous, as after a real rotation) and every node's config is pushed.
// A rotation a real run left in progress in this state is finished the
// same way, with its pending key.
func (x *rotation) sandboxGossip(ctx context.Context) error {
	c := x.c
	c.sandboxSkips("the keyring steps through the Consul API (install the new key on every member, use it, remove the old one)",
		"makes the new key in the state and pushes every node's config with it")
	start := time.Now()
	kr, err := x.st.Keyring()
	if err != nil {
		return err
	}
	key := kr.Pending
	if key == "" {
		if key, err = ca.NewGossipKey(nil); err != nil {
			return err
		}
	}
	res := &rotate.GossipResult{Old: ca.GossipFingerprint(kr.Primary), New: ca.GossipFingerprint(key)}
	if err := x.st.SetKeyring(&ca.Keyring{Primary: key, Previous: []string{kr.Primary}}); err != nil {
		return fmt.Errorf("rotate gossip: store the new key: %w", err)
	}
	if err := x.st.ClearRotation(ca.GossipRotation); err != nil {
		return err
	}
	fmt.Fprintf(c.logw(), "gossip new key  %s (old key %s) is the state's primary key now\n", res.New, res.Old)
	if _, err := x.push(ctx, "gossip config"); err != nil {
		return fmt.Errorf("rotate gossip: the new key is in the state but not on every node: %w; re-run `mtlsctl apply` to finish", err)
	}
	res.Duration = time.Since(start)
	if c.JSON {
		return c.writeJSON("rotate-gossip", res)
	}
	fmt.Fprintf(c.stdout(), "\ngossip key replaced in the state and in every node's config: %s -> %s in %s; no keyring was changed: the sandbox runs no agent\n", res.Old, res.New, res.Duration.Round(time.Millisecond))
	return nil
}
