package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/internal/progress"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// DistOptions are the flags shared by every command that reaches the nodes.
type DistOptions struct {
	Concurrency       int
	Timeout           time.Duration // per SSH step
	AcceptNewHostKeys bool
	Nodes             []string // limit to these nodes (nil = all)
	// SkipLive leaves the Consul agents alone: no health wait after apply,
	// no live section in status (for nodes without agents, e.g. the demo).
	SkipLive bool

	// HomeDir replaces the user's home for ~/.ssh lookups (tests, demo).
	HomeDir string
	// Dial replaces the TCP dialer (tests: latency proxies).
	Dial distribute.Options

	// annotate rewrites progress events before they are shown (the demo).
	annotate func(progress.Event) progress.Event
	// sandbox is the sandbox directory when the cluster file is a
	// sandbox's (sandboxDist): the nodes run no agent, and the rotations
	// skip their live steps, saying so.
	sandbox string
}

// ApplyOptions are the options of `apply`.
type ApplyOptions struct {
	Yes bool // skip the confirmation prompt
	// ForceUnlock takes over the state lock and node locks of runs that are
	// over (--force-unlock[=RUN]).
	ForceUnlock distribute.Unlock
	// PlanFile applies a plan saved by `plan -out FILE`, exactly, without
	// asking: refused when the bundles or any node changed since.
	PlanFile string
	// SkipPreflight leaves out the free-port and clock-skew checks apply
	// runs before it changes anything.
	SkipPreflight bool
}

// PlanOptions are the options of `plan`.
type PlanOptions struct {
	DetailedExit bool   // exit 2 (ChangesPending) when a node has changes
	Out          string // save the plan to this file for `apply FILE`
}

// distOptions builds the transport options from the flags and the state dir.
func (c Common) distOptions(d DistOptions, st *ca.State) distribute.Options {
	o := d.Dial
	o.Concurrency = d.Concurrency
	if d.Timeout > 0 {
		o.StepTimeout = d.Timeout
		o.ConnectTimeout = d.Timeout
	}
	o.AcceptNewHostKeys = d.AcceptNewHostKeys
	o.NoAgents = d.SkipLive
	o.UseAgent = os.Getenv("SSH_AUTH_SOCK") != ""
	if d.HomeDir != "" {
		o.HomeDir = d.HomeDir
	}
	if st != nil {
		o.JournalDir = st.JournalDir()
	}
	o.Progress = c.plainProgress(d)
	if c.Interactive {
		o.Passphrase = c.askPassphrase
	}
	return o
}

// askPassphrase reads an identity file's passphrase from the terminal
// without echo. It is asked once per file and never logged.
func (c Common) askPassphrase(file string) ([]byte, error) {
	f, ok := c.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, fmt.Errorf("%s is encrypted: load it into ssh-agent (ssh-add) to use it without a terminal", file)
	}
	fmt.Fprintf(c.stderr(), "passphrase for %s: ", file)
	pass, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(c.stderr())
	return pass, err
}

// selectBundles keeps the bundles of the named nodes (all when names is nil).
func selectBundles(bundles []consulcfg.Bundle, names []string) []consulcfg.Bundle {
	if names == nil {
		return bundles
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []consulcfg.Bundle
	for _, b := range bundles {
		if want[b.Node] {
			out = append(out, b)
		}
	}
	return out
}

// parseNodes splits --nodes values (comma-separated) and checks every name
// against the cluster file. No --nodes means every node (nil); a --nodes
// that names no node ("" or ",") is a usage error, never "every node".
func parseNodes(t *inventory.Topology, lists []string) ([]string, error) {
	if len(lists) == 0 {
		return nil, nil
	}
	var out []string
	for _, list := range lists {
		for _, n := range strings.Split(list, ",") {
			if n = strings.TrimSpace(n); n == "" {
				continue
			}
			if t.Node(n) == nil {
				return nil, Usagef("--nodes: %w", &UnknownNodeError{Node: n, Source: t.Cluster.Source})
			}
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, Usagef("--nodes names no node: give node names, or leave --nodes out to work on every node")
	}
	return out, nil
}

// remote is what every command that reaches the nodes builds once: the
// topology, the selected nodes' bundles, the state and one session (one SSH
// connection per node, shared by plan, apply, status and the live checks).
type remote struct {
	t *inventory.Topology
	// all are every node's bundles, rendered with ports; bundles are the
	// selected nodes' (--nodes).
	all     []consulcfg.Bundle
	ports   *inventory.Assignment
	bundles []consulcfg.Bundle
	st      *ca.State
	sess    *distribute.Session
	rep     *switchReporter // the session's progress: live during a phase, plain lines otherwise
	// skipLive: the Consul agents are not asked (--skip-live, the demo).
	skipLive bool
	// pending is what generate must do before the bundles can be pushed
	// (opened with preview and the state behind the cluster file); the
	// bundles then hold stand-ins for what it would make.
	pending *GenerateReport
}

// openRemote loads the cluster file and the state, renders the bundles of
// the selected nodes and opens the session (connections are made lazily).
func openRemote(c Common, d DistOptions) (*remote, error) {
	return openRemoteMode(c, d, distribute.Unlock{}, true)
}

// openRemoteMode is openRemote with the force-unlock choice, and readOnly
// for the commands that only look: they use the ACL management token but
// never bootstrap the ACL system or write tokens.
func openRemoteMode(c Common, d DistOptions, force distribute.Unlock, readOnly bool) (*remote, error) {
	return openRemoteWith(c, d, remoteMode{force: force, readOnly: readOnly})
}

// openRemoteForce is openRemote for commands that change nodes; force
// says which node locks of other runs they may take over (--force-unlock).
func openRemoteForce(c Common, d DistOptions, force distribute.Unlock) (*remote, error) {
	return openRemoteMode(c, d, force, false)
}

// remoteMode says how openRemoteWith opens the remote.
type remoteMode struct {
	force    distribute.Unlock // node locks of other runs it may take over
	readOnly bool              // never bootstrap the ACL system or write tokens
	// preview renders from what generate would make when the state does
	// not cover the cluster file yet (plan, apply), instead of refusing;
	// remote.pending then says what generate would do.
	preview bool
	// create makes the state directory when there is none (apply).
	create bool
}

func openRemoteWith(c Common, d DistOptions, m remoteMode) (*remote, error) {
	t, err := inventory.Load(c.Inventory)
	if err != nil {
		return nil, err
	}
	// A bad --nodes is a usage error, found before the state is read.
	names, err := parseNodes(t, d.Nodes)
	if err != nil {
		return nil, err
	}
	var (
		all     []consulcfg.Bundle
		ports   *inventory.Assignment
		pending *GenerateReport
	)
	if m.preview {
		all, ports, pending, err = renderPreview(c, t)
	} else {
		all, ports, err = renderWithPorts(c, t)
	}
	if err != nil {
		return nil, err
	}
	bundles := selectBundles(all, names)
	st, err := ca.Open(c.State, ca.OpenOptions{Create: m.create, AllowMissing: m.preview})
	if err != nil {
		return nil, err
	}
	o := c.distOptions(d, st)
	o.ForceUnlock = m.force
	rep := &switchReporter{to: o.Progress}
	o.Progress = rep
	sess, err := distribute.Open(t, o)
	if err != nil {
		return nil, err
	}
	readOnly := m.readOnly
	r := &remote{t: t, all: all, ports: ports, bundles: bundles, st: st, sess: sess, rep: rep, skipLive: d.SkipLive, pending: pending}
	if err := r.setupACL(readOnly); err != nil {
		sess.Close()
		return nil, err
	}
	return r, nil
}

func (r *remote) close() { r.sess.Close() }

// rebundle renders the selected nodes' bundles again from the state (a
// rotation changes the state between its pushes).
func (r *remote) rebundle(c Common, d DistOptions) error {
	names, err := parseNodes(r.t, d.Nodes)
	if err != nil {
		return err
	}
	all, ports, err := renderWithPorts(c, r.t)
	if err != nil {
		return err
	}
	r.all, r.ports, r.bundles = all, ports, selectBundles(all, names)
	return nil
}

// live is the session's live-cluster handle, told which certificate each
// selected node must serve.
func (r *remote) live() *consulapi.Cluster {
	cl := r.sess.Live()
	cl.SetBundles(r.bundles)
	return cl
}

// Plan shows what apply would change on every node, changing nothing; with
// p.Out it also saves the plan for `apply FILE`.
func Plan(ctx context.Context, c Common, d DistOptions, po PlanOptions) error {
	d = c.sandboxDist(d)
	r, err := openRemoteWith(c, d, remoteMode{readOnly: true, preview: true})
	if err != nil {
		return err
	}
	defer r.close()
	if r.pending != nil && po.Out != "" {
		// A saved plan is applied byte for byte; certificates generate has
		// not issued yet have no bytes to save.
		return fmt.Errorf("the state in %s does not cover %s yet (%s): run `mtlsctl generate`, then `mtlsctl plan -out %s`; or run `mtlsctl apply`, which shows this plan, generates after you confirm and pushes",
			c.State, c.Inventory, pendingSummary(r.pending), po.Out)
	}
	stop := c.startProgress(r, d)
	res, err := r.sess.Plan(ctx, r.bundles, distribute.PlanOptions{Diffs: true})
	stop()
	if err != nil {
		return err
	}
	ip, want, ierr := r.planIntentions(ctx)
	if want != nil {
		res.Intentions = ip
		if ierr != nil {
			res.IntentionsError = ierr.Error()
		}
	}
	if c.JSON {
		if werr := c.writeJSON("plan", planDoc{PlanResult: res, Generate: r.pending}); werr != nil {
			return werr
		}
	} else {
		writePending(c.stdout(), c.State, r.pending)
		writePlan(c.stdout(), res)
		writeIntentionPlan(c.stdout(), ip, want, ierr)
	}
	if res.Err() != nil {
		return fmt.Errorf("%w: %d of %d node(s) could not be inspected", ErrReported, countPlanErrors(res), len(res.Nodes))
	}
	if po.Out != "" {
		if err := distribute.SavePlan(po.Out, res); err != nil {
			return fmt.Errorf("saving the plan: %w", err)
		}
		c.printf("\nsaved the plan to %s: `mtlsctl apply %s` applies exactly this, and refuses if a node changed since\n", po.Out, po.Out)
	}
	if po.DetailedExit && (res.Changes() || r.pending != nil || (ip != nil && ip.Changes() > 0)) {
		return ChangesPending{Nodes: countPlanChanges(res)}
	}
	return nil
}

func countPlanErrors(r *distribute.PlanResult) int {
	n := 0
	for _, np := range r.Nodes {
		if np.Err != nil {
			n++
		}
	}
	return n
}

func countPlanChanges(r *distribute.PlanResult) int {
	n := 0
	for _, np := range r.Nodes {
		if np.Changes() {
			n++
		}
	}
	return n
}

// writePlan prints the plan per node: + create, ~ change, = unchanged.
func writePlan(w io.Writer, r *distribute.PlanResult) {
	changed := 0
	for _, np := range r.Nodes {
		switch {
		case np.Err != nil:
			fmt.Fprintf(w, "node %s (%s): ERROR %s\n", np.Node, np.Address, np.Error)
			continue
		case !np.Changes():
			fmt.Fprintf(w, "node %s (%s): up to date (generation %s)\n", np.Node, np.Address, np.Generation)
			continue
		}
		changed++
		from := np.CurrentGeneration
		if from == "" {
			from = "none"
		}
		fmt.Fprintf(w, "node %s (%s): generation %s -> %s\n", np.Node, np.Address, from, np.Generation)
		if np.Lock != nil {
			fmt.Fprintf(w, "  locked: %s\n", np.Lock)
		}
		for _, u := range np.Unread {
			fmt.Fprintf(w, "  not read: %s (taken as absent; apply replaces it)\n", u)
		}
		for _, f := range np.Files {
			switch f.Action {
			case distribute.ActionUnchanged:
				continue
			case distribute.ActionCreate:
				fmt.Fprintf(w, "  + %s (%s, %s)\n", f.Path, f.Kind, f.NewMode)
			case distribute.ActionMetadata:
				fmt.Fprintf(w, "  ~ %s: mode/owner %s %s -> %s %s\n", f.Path, f.OldMode, f.OldOwner, f.NewMode, f.NewOwner)
			case distribute.ActionDelete:
				fmt.Fprintf(w, "  - %s (%s)\n", f.Path, f.Kind)
			default:
				fmt.Fprintf(w, "  ~ %s (%s)\n", f.Path, f.Kind)
			}
			if f.Note != "" {
				fmt.Fprintf(w, "      %s\n", f.Note)
			}
			if f.OldFingerprint != "" || f.NewFingerprint != "" {
				fmt.Fprintf(w, "      fingerprint %s -> %s\n", orNone(f.OldFingerprint), f.NewFingerprint)
			}
			// A new file's whole content is no review aid; a change's diff is.
			if f.Diff != "" && f.Action == distribute.ActionChange {
				for _, line := range strings.Split(strings.TrimRight(f.Diff, "\n"), "\n") {
					fmt.Fprintf(w, "      %s\n", line)
				}
			}
		}
		for _, l := range np.Mesh.Lines() {
			fmt.Fprintf(w, "  mesh: %s\n", l)
		}
		if np.Uninstall {
			fmt.Fprintf(w, "  mesh: remove the node state directory\n")
		}
	}
	if failed := countPlanErrors(r); failed > 0 {
		inspected := len(r.Nodes) - failed
		fmt.Fprintf(w, "\n%d of %d node(s) could not be inspected (errors above); %d of the %d inspected have changes to apply\n", failed, len(r.Nodes), changed, inspected)
		return
	}
	fmt.Fprintf(w, "\n%d of %d node(s) have changes to apply\n", changed, len(r.Nodes))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Apply pushes every bundle: it takes the state lock, finishes an
// interrupted apply, plans (or loads the saved plan), shows the plan and
// asks, then applies exactly that plan (stage everywhere and verify, commit
// everywhere, reload) and waits for the cluster to be healthy, all on one
// connection per node.
func Apply(ctx context.Context, c Common, d DistOptions, a ApplyOptions) error {
	d = c.sandboxDist(d)
	r, err := openRemoteWith(c, d, remoteMode{force: a.ForceUnlock, preview: true, create: true})
	if err != nil {
		return err
	}
	defer r.close()
	var plan *distribute.PlanResult
	if a.PlanFile != "" {
		// Checked before anything else: a stale plan changes nothing.
		if plan, err = distribute.LoadPlan(a.PlanFile); err != nil {
			return err
		}
		if r.pending != nil {
			return fmt.Errorf("%s: %w: the state no longer covers the cluster file (%s); run `mtlsctl plan -out FILE` again", a.PlanFile, distribute.ErrStalePlan, pendingSummary(r.pending))
		}
		if err := plan.Attach(r.bundles); err != nil {
			return fmt.Errorf("%s: %w; run `mtlsctl plan -out FILE` again", a.PlanFile, err)
		}
	} else if !a.Yes && !c.Interactive {
		return errors.New("apply changes nodes: pass --yes to confirm when not on a terminal")
	}
	lock, err := lockState(r.st, "apply", a.ForceUnlock.Any())
	if err != nil {
		return err
	}
	defer lock.Unlock()
	recovered, err := r.sess.Recover(ctx)
	if recovered != "" {
		c.printf("recovered an interrupted apply: %s\n", recovered)
	}
	if err != nil {
		return err
	}
	if err := r.refuseACLTurnOn(ctx); err != nil {
		return err
	}
	if !a.SkipPreflight {
		if err := r.preflightCheap(ctx, c); err != nil {
			return err
		}
	}
	if plan == nil {
		if r.pending != nil && a.Yes {
			// Nobody reviews a preview: generate first, then plan.
			if err := r.generate(c, d); err != nil {
				return err
			}
		}
		stop := c.startProgress(r, d)
		plan, err = r.sess.Plan(ctx, r.bundles, distribute.PlanOptions{Diffs: !a.Yes})
		stop()
		if err != nil {
			return err
		}
		if !a.Yes {
			// The plan is for the person confirming; with -o json stdout
			// is kept for the apply's result.
			planOut := c.stdout()
			if c.JSON {
				planOut = c.stderr()
			}
			writePending(planOut, c.State, r.pending)
			writePlan(planOut, plan)
			ip, want, ierr := r.planIntentions(ctx)
			writeIntentionPlan(planOut, ip, want, ierr)
			if plan.Err() != nil {
				return fmt.Errorf("%w: fix the unreachable node(s) first; apply pushes to all nodes or none", ErrReported)
			}
			changes := plan.Changes() || r.pending != nil
			if changes && !c.confirm(fmt.Sprintf("Apply these changes to %d node(s)?", countPlanChanges(plan))) {
				return errors.New("apply cancelled: nothing was changed")
			}
			if r.pending != nil {
				// Issue what the plan said, then plan again with the real
				// bytes: the same files must change, or nothing is pushed.
				if err := r.generate(c, d); err != nil {
					return err
				}
				preview := plan
				stop := c.startProgress(r, d)
				plan, err = r.sess.Plan(ctx, r.bundles, distribute.PlanOptions{})
				stop()
				if err != nil {
					return err
				}
				if err := samePlanShape(preview, plan); err != nil {
					return fmt.Errorf("%w: %w; the state now holds what generate issued, the nodes are unchanged: run `mtlsctl apply` again to review the new plan", distribute.ErrMoved, err)
				}
			}
		}
	} else if recovered != "" {
		return fmt.Errorf("%w: an interrupted apply was finished first, so the nodes moved since the plan %s; plan again", distribute.ErrMoved, a.PlanFile)
	}
	r.sess.SetBeforeMesh(func(ctx context.Context) error { return r.syncIntentions(ctx, c) })
	stop := c.startProgress(r, d)
	res, err := r.sess.Apply(ctx, plan)
	stop()
	if res != nil {
		res.Recovered = recovered
		if c.JSON {
			if werr := c.writeJSON("apply", res); werr != nil {
				return werr
			}
		} else {
			writeApply(c.stdout(), res)
		}
	}
	if err != nil && res != nil {
		return reported(err)
	}
	if err != nil {
		return err
	}
	// A push is done when the cluster is: wait for leaders, voters, members
	// and every agent serving its new certificate.
	if res.Changed && !d.SkipLive {
		if _, err := verifyCluster(ctx, c, r.live()); err != nil {
			return err
		}
	}
	if !d.SkipLive {
		// Tokens and intentions are the cluster's, not a node's: written
		// once the agents answer, also when no node changed (drift).
		if err := r.sess.Live().EnsureACL(ctx); err != nil {
			return fmt.Errorf("ACL: %w", err)
		}
		if err := r.syncIntentions(ctx, c); err != nil {
			return err
		}
		if res.Changed {
			if err := r.waitProxies(ctx, c); err != nil {
				return err
			}
		}
		if err := r.pruneTokens(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// reported is err after the per-node report printed it in full: its text
// is one summary line, and errors.Is/As still find its causes (ErrMoved,
// ErrLocked, ...) for the exit code and the hint.
func reported(err error) error { return &reportedError{err: err} }

type reportedError struct{ err error }

func (e *reportedError) Error() string { return ErrReported.Error() + ": " + summarizeErr(e.err) }

func (e *reportedError) Unwrap() []error { return []error{ErrReported, e.err} }

// summarizeErr keeps the first line of a joined error and counts the rest.
func summarizeErr(err error) string {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%s (and %d more)", lines[0], len(lines)-1)
}

func (c Common) confirm(question string) bool {
	c.printf("%s [y/N] ", question)
	line, _ := bufio.NewReader(c.Stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

func writeApply(w io.Writer, r *distribute.ApplyResult) {
	if r.Recovered != "" {
		fmt.Fprintf(w, "recovered an interrupted apply: %s\n", r.Recovered)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tOUTCOME\tGENERATION\tFILES\tACTION\tERROR")
	counts := map[string]int{}
	for _, n := range r.Nodes {
		counts[n.Outcome]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", n.Node, n.Outcome, n.Generation, len(n.Changed), n.Action, n.Error)
	}
	tw.Flush()
	if !r.Changed {
		fmt.Fprintln(w, "\nnothing to do: every node already holds its bundle")
		return
	}
	var parts []string
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	fmt.Fprintf(w, "\n%s\n", strings.Join(parts, ", "))
}

// Status reads every node's state and exits non-zero on drift, a pending
// generation or an unreachable node.
func Status(ctx context.Context, c Common, d DistOptions) error {
	d = c.sandboxDist(d)
	c.sandboxStatusNote(d)
	r, err := openRemote(c, d)
	if err != nil {
		return err
	}
	defer r.close()
	stop := c.startProgress(r, d)
	res, _ := r.sess.Status(ctx, r.bundles)
	stop()
	if res == nil {
		return errors.New("status: no result")
	}
	var live *consulapi.Health
	var liveErr error
	// The live tables mark a node the table above shows unreachable,
	// without its error again.
	down := map[string]string{}
	for _, n := range res.Nodes {
		if !n.Reachable {
			down[n.Node] = n.Error
		}
	}
	if c.JSON {
		if !d.SkipLive {
			live, liveErr = liveStatus(ctx, c, r, down)
		}
		out := struct {
			*distribute.StatusResult
			Live *consulapi.Health `json:"live,omitempty"`
		}{res, live}
		if werr := c.writeJSON("status", out); werr != nil {
			return werr
		}
	} else {
		writeStatus(c.stdout(), res, c.now())
		if !d.SkipLive {
			live, liveErr = liveStatus(ctx, c, r, down)
		}
	}
	bad := 0
	for _, n := range res.Nodes {
		if !n.Reachable || n.Err != nil || len(n.Drift) > 0 || n.Pending {
			bad++
		}
	}
	var problems []string
	if bad > 0 {
		problems = append(problems, fmt.Sprintf("%d node(s) unreachable, drifted or not up to date", bad))
	}
	if liveErr != nil {
		problems = append(problems, "the Consul cluster is not healthy: "+elideDown(summarizeErr(liveErr), down))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrReported, strings.Join(problems, "; "))
	}
	return nil
}

func writeStatus(w io.Writer, r *distribute.StatusResult, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREACHABLE\tGENERATION\tBACKUPS\tCA\tGOSSIP KEY\tCERT EXPIRES\tDRIFT")
	for _, n := range r.Nodes {
		if !n.Reachable || n.Err != nil {
			fmt.Fprintf(tw, "%s\tno\t\t\t\t\t\t%s\n", n.Node, n.Error)
			continue
		}
		gen := orNone(n.Generation)
		if n.Pending {
			gen += " (pending " + n.Expected + ")"
		}
		expires := ""
		if !n.CertNotAfter.IsZero() {
			expires = fmt.Sprintf("%s (%dd)", n.CertNotAfter.UTC().Format("2006-01-02"), int(n.CertNotAfter.Sub(now).Hours()/24))
		}
		drift := "none"
		if len(n.Drift) > 0 {
			var parts []string
			for _, dr := range n.Drift {
				parts = append(parts, dr.Path+": "+dr.Reason)
			}
			drift = strings.Join(parts, "; ")
		}
		fmt.Fprintf(tw, "%s\tyes\t%s\t%d\t%s\t%s\t%s\t%s\n", n.Node, gen, n.Backups, short(n.CAFingerprint), n.GossipFingerprint, expires, drift)
	}
	tw.Flush()
}

// short abbreviates a colon-hex certificate fingerprint for tables.
func short(fp string) string {
	if len(fp) > 23 {
		return fp[:23] + "…"
	}
	return fp
}

// ExpiryOptions are the options of `certs check-expiration`.
type ExpiryOptions struct {
	Remote   bool // read the certificates the nodes hold
	WarnDays int  // a warning (exit 4) when one expires within this many days
}

// CheckExpiration prints the expiry of the certificates the cluster file
// uses: from the state dir, the CA, the CAs still trusted from a rollover
// and every node's leaf; with Remote, the leaf each node holds (a node that
// cannot be reached is a row saying so). Each certificate that is not ok is
// named with the command that fixes it. It returns an error for the exit
// code: a failure (expired, unreachable, unreadable, missing: exit 1) or
// an ExpiryWarning (one expires within WarnDays: exit 4).
func CheckExpiration(ctx context.Context, c Common, d DistOptions, e ExpiryOptions) error {
	d = c.sandboxDist(d)
	var rows []ExpiryRow
	if e.Remote {
		r, err := openRemote(c, d)
		if err != nil {
			return err
		}
		defer r.close()
		res, _ := r.sess.Status(ctx, r.bundles)
		if res == nil {
			return errors.New("status: no result")
		}
		rows = remoteExpiry(r.t, res, c.now(), e.WarnDays)
	} else {
		t, err := inventory.Load(c.Inventory)
		if err != nil {
			return err
		}
		nodes, err := parseNodes(t, d.Nodes)
		if err != nil {
			return err
		}
		st, err := ca.Open(c.State, ca.OpenOptions{})
		if err != nil {
			return err
		}
		if rows, err = stateExpiry(st, t, nodes, c.now(), e.WarnDays); err != nil {
			return err
		}
	}
	if c.JSON {
		if err := c.writeJSON("certs-check-expiration", struct {
			Certificates any `json:"certificates"`
		}{rows}); err != nil {
			return err
		}
	} else if err := writeExpiry(c.stdout(), rows, e.WarnDays); err != nil {
		return err
	}
	return expiryResult(rows, e.WarnDays)
}
