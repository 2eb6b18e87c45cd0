package consulapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/consulcfg"
)

// Intentions sync. The mesh's intentions (consulcfg.Intentions) are kept in
// Consul by PlanIntentions and ApplyIntentions, through the HTTP API of one
// agent of the primary datacenter (the first of the cluster file), where
// Consul keeps them; DeleteIntentions removes them on uninstall.
//
// Ownership: an intention is mtlsctl's when its Meta[consulcfg.IntentionMetaKey]
// is the cluster's name. Every other intention (no meta, or another
// cluster's) is foreign and never created over, updated or deleted.
//
// Consul keeps at most one intention per (source, destination), so a foreign
// intention on a pair mtlsctl wants is a conflict: it stays as it is and is
// reported with what it says. ApplyIntentions refuses to change anything
// while a conflict Opens the mesh (a foreign allow where mtlsctl wants a
// deny, above all a foreign `*` -> `*` allow, which makes the mesh's default
// deny impossible): applying the allows would report a mesh that is in fact
// open. Every other conflict is a warning: the rest is applied and the
// conflicts are returned in the result.
//
// The legacy ID-based endpoints (POST/PUT/DELETE /v1/connect/intentions[/id])
// are used because Consul 1.6 has no others; later versions still serve them.

// IntentionConcurrency bounds how many intention writes ApplyIntentions and
// DeleteIntentions have in flight at once.
const IntentionConcurrency = 8

// intentionLinesMax is how many lines IntentionPlan.Lines lists before
// summarising the rest.
const intentionLinesMax = 50

// ErrIntentionConflict is wrapped by ApplyIntentions when a foreign intention
// would leave the mesh open; nothing was changed.
var ErrIntentionConflict = errors.New("a foreign intention opens the mesh")

// LiveIntention is an intention as Consul holds it.
type LiveIntention struct {
	ID          string `json:"id"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	// Action is "allow" or "deny"; "" for an intention with L7 permissions
	// (Consul >= 1.9), whose count is Permissions.
	Action      string            `json:"action"`
	Permissions int               `json:"permissions,omitempty"`
	Description string            `json:"description,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
}

// Says is the intention in words: "allow a -> b" ("2 permissions a -> b").
func (l LiveIntention) Says() string {
	a := l.Action
	if l.Permissions > 0 {
		a = fmt.Sprintf("%d permission(s)", l.Permissions)
	}
	return a + " " + l.Source + " -> " + l.Destination
}

// intention is l as a consulcfg.Intention.
func (l LiveIntention) intention() consulcfg.Intention {
	return consulcfg.Intention{Source: l.Source, Destination: l.Destination, Action: l.Action, Description: l.Description}
}

// IntentionChange is one of mtlsctl's intentions whose action or
// description must change.
type IntentionChange struct {
	ID   string              `json:"id"`
	Want consulcfg.Intention `json:"want"`
	Have LiveIntention       `json:"have"`
}

// IntentionConflict is a foreign intention on a (source, destination)
// mtlsctl wants. It is never touched.
type IntentionConflict struct {
	Want consulcfg.Intention `json:"want"`
	Have LiveIntention       `json:"have"`
	// Agrees is set when the foreign intention has the wanted action (the
	// traffic is as the mesh wants; the intention just is not mtlsctl's).
	Agrees bool `json:"agrees,omitempty"`
	// Opens is set when it allows what mtlsctl must deny (a foreign
	// `*` -> `*` allow: the mesh's default deny is impossible).
	// ApplyIntentions refuses to run while any conflict opens the mesh.
	Opens bool `json:"opens,omitempty"`
}

// Line is the conflict in one line, beginning with "! conflict".
func (c IntentionConflict) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "! conflict %s (%s, id %s", c.Have.Says(), owner(c.Have.Meta), c.Have.ID)
	if c.Have.Description != "" {
		fmt.Fprintf(&b, ", %q", c.Have.Description)
	}
	b.WriteString("): ")
	switch {
	case c.Opens && c.Want.Source == "*" && c.Want.Destination == "*":
		fmt.Fprintf(&b, "mtlsctl wants %s, so the mesh's default deny is impossible: remove it (apply refuses while it exists)", c.Want.Action)
	case c.Opens:
		fmt.Fprintf(&b, "mtlsctl wants %s, so this traffic stays open: remove it (apply refuses while it exists)", c.Want.Action)
	case c.Agrees:
		b.WriteString("mtlsctl wants the same; left alone")
	default:
		fmt.Fprintf(&b, "mtlsctl wants %s; left alone, this traffic stays %s", c.Want.Action, orDash(c.Have.Action))
	}
	return b.String()
}

func owner(meta map[string]string) string {
	if v, ok := meta[consulcfg.IntentionMetaKey]; ok {
		return fmt.Sprintf("mtlsctl's for cluster %q", v)
	}
	return "not mtlsctl's"
}

// IntentionPlan is what ApplyIntentions would do to bring the cluster's
// intentions to Desired. It is JSON-serialisable (plan -o json, saved plans).
type IntentionPlan struct {
	// Cluster is the name in Meta[consulcfg.IntentionMetaKey].
	Cluster string `json:"cluster"`
	// Via is the node whose agent was asked.
	Via string `json:"via"`
	// Desired is every intention mtlsctl wants, as given to PlanIntentions
	// (ApplyIntentions works from it).
	Desired []consulcfg.Intention `json:"desired"`
	// Create lists the wanted intentions that are missing; Update
	// mtlsctl's whose action or description differs; Delete mtlsctl's that
	// are no longer wanted. Keep counts mtlsctl's that are as wanted.
	Create []consulcfg.Intention `json:"create,omitempty"`
	Update []IntentionChange     `json:"update,omitempty"`
	Delete []LiveIntention       `json:"delete,omitempty"`
	Keep   int                   `json:"keep"`
	// Conflicts are foreign intentions on wanted pairs (never touched).
	Conflicts []IntentionConflict `json:"conflicts,omitempty"`
	// Foreign counts the other intentions that are not mtlsctl's (left
	// alone, not reported one by one).
	Foreign int `json:"foreign"`
}

// Changes is how many writes applying p takes.
func (p *IntentionPlan) Changes() int { return len(p.Create) + len(p.Update) + len(p.Delete) }

// Opens returns the conflicts that make ApplyIntentions refuse.
func (p *IntentionPlan) Opens() []IntentionConflict {
	var out []IntentionConflict
	for _, c := range p.Conflicts {
		if c.Opens {
			out = append(out, c)
		}
	}
	return out
}

// Summary is the plan in one line: "intentions: 3 to create, 1 to update,
// 0 to delete, 40 unchanged, 1 conflict".
func (p *IntentionPlan) Summary() string {
	s := fmt.Sprintf("intentions: %d to create, %d to update, %d to delete, %d unchanged", len(p.Create), len(p.Update), len(p.Delete), p.Keep)
	if n := len(p.Conflicts); n > 0 {
		s += fmt.Sprintf(", %d conflict(s)", n)
	}
	return s
}

// Lines renders the plan, one line per intention: conflicts first ("!
// conflict ..."), then "+ allow a -> b" (create), "~ allow a -> b (was deny)"
// (update), "- allow a -> b" (delete). After 50 lines the rest is
// summarised as "... and N more". An empty plan has no lines.
func (p *IntentionPlan) Lines() []string { return p.LinesMax(intentionLinesMax) }

// LinesMax is Lines with another limit; limit <= 0 lists everything.
func (p *IntentionPlan) LinesMax(limit int) []string {
	var out []string
	for _, c := range p.Conflicts {
		out = append(out, c.Line())
	}
	for _, i := range p.Create {
		out = append(out, "+ "+says(i))
	}
	for _, u := range p.Update {
		var was []string
		switch {
		case u.Have.Permissions > 0:
			was = append(was, fmt.Sprintf("was %d permission(s)", u.Have.Permissions))
		case u.Have.Action != u.Want.Action:
			was = append(was, "was "+orDash(u.Have.Action))
		}
		if u.Have.Description != u.Want.Description {
			was = append(was, fmt.Sprintf("description %q, was %q", u.Want.Description, u.Have.Description))
		}
		out = append(out, "~ "+says(u.Want)+" ("+strings.Join(was, "; ")+")")
	}
	for _, d := range p.Delete {
		out = append(out, "- "+d.Says())
	}
	if limit > 0 && len(out) > limit {
		n := len(out) - limit
		out = append(out[:limit:limit], fmt.Sprintf("... and %d more", n))
	}
	return out
}

func says(i consulcfg.Intention) string { return i.Action + " " + i.Source + " -> " + i.Destination }

// IntentionFailure is one intention write that failed.
type IntentionFailure struct {
	Op        string              `json:"op"` // "create", "update" or "delete"
	Intention consulcfg.Intention `json:"intention"`
	ID        string              `json:"id,omitempty"`
	Message   string              `json:"error"`
	Err       error               `json:"-"`
}

func (f *IntentionFailure) Error() string {
	s := f.Op + " " + says(f.Intention)
	if f.ID != "" {
		s += " (id " + f.ID + ")"
	}
	return s + ": " + f.Message
}

// Unwrap returns the cause.
func (f *IntentionFailure) Unwrap() error { return f.Err }

// IntentionResult is what ApplyIntentions or DeleteIntentions did.
type IntentionResult struct {
	Via     string `json:"via,omitempty"`
	Created int    `json:"created"`
	Updated int    `json:"updated"`
	Deleted int    `json:"deleted"`
	Keep    int    `json:"keep"`
	// Failed lists the writes that failed; Skipped counts those not tried
	// because an earlier phase failed or ctx ended.
	Failed  []IntentionFailure `json:"failed,omitempty"`
	Skipped int                `json:"skipped,omitempty"`
	// Conflicts are the foreign intentions left alone (warnings, unless
	// one Opens the mesh: then nothing was changed).
	Conflicts []IntentionConflict `json:"conflicts,omitempty"`
}

// Summary is the result in one line.
func (r *IntentionResult) Summary() string {
	s := fmt.Sprintf("intentions: %d created, %d updated, %d deleted, %d unchanged", r.Created, r.Updated, r.Deleted, r.Keep)
	if n := len(r.Failed); n > 0 {
		s += fmt.Sprintf(", %d failed", n)
	}
	if r.Skipped > 0 {
		s += fmt.Sprintf(", %d not tried", r.Skipped)
	}
	if n := len(r.Conflicts); n > 0 {
		s += fmt.Sprintf(", %d conflict(s) left alone", n)
	}
	return s
}

// PlanIntentions lists the cluster's intentions through an agent of the
// primary datacenter (servers first, one that knows a leader) and says how
// to bring them to desired, as mtlsctl's intentions for cluster (see the
// package's ownership rules above). desired must name each (source,
// destination) once, with action "allow" or "deny".
func (c *Cluster) PlanIntentions(ctx context.Context, desired []consulcfg.Intention, cluster string) (*IntentionPlan, error) {
	if err := checkDesired(desired, cluster); err != nil {
		return nil, err
	}
	via, live, err := c.liveIntentions(ctx, "")
	if err != nil {
		return nil, err
	}
	p := planIntentions(desired, live, cluster)
	p.Via = via
	return p, nil
}

func checkDesired(desired []consulcfg.Intention, cluster string) error {
	if cluster == "" {
		return errors.New("intentions: no cluster name to mark them with")
	}
	seen := map[[2]string]bool{}
	for _, d := range desired {
		if d.Source == "" || d.Destination == "" {
			return fmt.Errorf("intentions: %q has an empty source or destination", says(d))
		}
		if d.Action != string(api.IntentionActionAllow) && d.Action != string(api.IntentionActionDeny) {
			return fmt.Errorf("intentions: %s -> %s has action %q, want allow or deny", d.Source, d.Destination, d.Action)
		}
		k := [2]string{d.Source, d.Destination}
		if seen[k] {
			return fmt.Errorf("intentions: %s -> %s is wanted twice", d.Source, d.Destination)
		}
		seen[k] = true
	}
	return nil
}

// planIntentions is the diff of desired against live (pure).
func planIntentions(desired []consulcfg.Intention, live []LiveIntention, cluster string) *IntentionPlan {
	p := &IntentionPlan{Cluster: cluster, Desired: slices.Clone(desired)}
	byPair := map[[2]string][]LiveIntention{}
	for _, l := range live {
		k := [2]string{l.Source, l.Destination}
		byPair[k] = append(byPair[k], l)
	}
	matched := map[string]bool{} // live IDs on a wanted pair
	for _, d := range desired {
		k := [2]string{d.Source, d.Destination}
		var mine *LiveIntention
		foreign := false
		for i, l := range byPair[k] {
			matched[l.ID] = true
			if !isOurs(l, cluster) {
				foreign = true
				p.Conflicts = append(p.Conflicts, IntentionConflict{Want: d, Have: l,
					Agrees: l.Action == d.Action && l.Permissions == 0,
					Opens:  d.Action == string(api.IntentionActionDeny) && l.Action != d.Action})
				continue
			}
			if mine == nil {
				mine = &byPair[k][i]
			} else { // Consul allows one per pair; delete any other
				p.Delete = append(p.Delete, l)
			}
		}
		switch {
		case mine == nil && !foreign:
			p.Create = append(p.Create, d)
		case mine == nil:
		case mine.Action != d.Action || mine.Permissions > 0 || mine.Description != d.Description:
			p.Update = append(p.Update, IntentionChange{ID: mine.ID, Want: d, Have: *mine})
		default:
			p.Keep++
		}
	}
	for _, l := range live {
		switch {
		case matched[l.ID]:
		case isOurs(l, cluster):
			p.Delete = append(p.Delete, l)
		default:
			p.Foreign++
		}
	}
	slices.SortFunc(p.Delete, func(a, b LiveIntention) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Destination, b.Destination), cmp.Compare(a.ID, b.ID))
	})
	return p
}

func isOurs(l LiveIntention, cluster string) bool {
	v, ok := l.Meta[consulcfg.IntentionMetaKey]
	return ok && v == cluster
}

// liveIntentions picks the agent to talk to (prefer first, when it
// answers) and lists every intention of the default namespace.
func (c *Cluster) liveIntentions(ctx context.Context, prefer string) (string, []LiveIntention, error) {
	via, err := c.intentionAgent(ctx, prefer)
	if err != nil {
		return "", nil, err
	}
	var raw []*api.Intention
	err = c.query(ctx, via, func(cl *api.Client, q *api.QueryOptions) error {
		var err error
		raw, _, err = cl.Connect().Intentions(q)
		return err
	})
	if err != nil {
		return via, nil, fmt.Errorf("intentions: list through %s: %w", via, err)
	}
	live := make([]LiveIntention, 0, len(raw))
	for _, r := range raw {
		if !defaultTenancy(r) {
			continue // other namespaces, partitions or peers: never mtlsctl's
		}
		live = append(live, LiveIntention{ID: r.ID, Source: r.SourceName, Destination: r.DestinationName,
			Action: string(r.Action), Permissions: len(r.Permissions), Description: r.Description, Meta: r.Meta})
	}
	return via, live, nil
}

func defaultTenancy(r *api.Intention) bool {
	dflt := func(s string) bool { return s == "" || s == "default" }
	return dflt(r.SourceNS) && dflt(r.DestinationNS) && dflt(r.SourcePartition) && dflt(r.DestinationPartition) &&
		r.SourcePeer == "" && r.SourceSamenessGroup == "" && (r.SourceType == "" || r.SourceType == api.IntentionSourceConsul)
}

// intentionAgent returns the first agent of the primary datacenter
// (prefer first, then servers, then clients) that knows a leader: Consul
// keeps intentions in the primary datacenter, and writes need a leader.
func (c *Cluster) intentionAgent(ctx context.Context, prefer string) (string, error) {
	if len(c.topo.Cluster.Datacenters) == 0 {
		return "", errors.New("intentions: the cluster file has no datacenter")
	}
	dc := c.topo.Cluster.Datacenters[0].Name
	var names []string
	if n := c.topo.Node(prefer); n != nil && n.Datacenter == dc {
		names = append(names, prefer)
	}
	for _, n := range c.candidates(dc) {
		if n.Name != prefer {
			names = append(names, n.Name)
		}
	}
	var errs []error
	for _, name := range names {
		var leader string
		err := c.query(ctx, name, func(cl *api.Client, q *api.QueryOptions) error {
			var err error
			leader, err = cl.Status().LeaderWithQueryOptions(q)
			return err
		})
		if err == nil && leader == "" {
			err = errors.New("no leader")
		}
		if err == nil {
			return name, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return "", fmt.Errorf("intentions: no agent of the primary datacenter %s answered with a leader: %w", dc, errors.Join(errs...))
}

// intentionOp is one write.
type intentionOp struct {
	op   string // create, update, delete
	want consulcfg.Intention
	id   string
	meta map[string]string // the live meta, kept on update
}

// ApplyIntentions brings the cluster's intentions to plan.Desired. It lists
// them again first (through plan.Via when it answers) and applies the
// difference with what is there now, so that running it again, after a
// partial failure or with an old plan, converges; the result says what it
// did. It refuses (ErrIntentionConflict, nothing changed) while a foreign
// intention opens the mesh; other conflicts are left alone and returned as
// warnings.
//
// Order, so that wanted traffic is never denied during a rollout: the
// creates and updates of allows first, then those of denies (the `*` -> `*`
// deny among them), then the deletes; at most IntentionConcurrency writes
// at a time within a phase. A phase with a failure stops the apply: the
// later phases are not tried (Skipped), so a failed allow never sits behind
// a new deny. The error names every failed intention.
func (c *Cluster) ApplyIntentions(ctx context.Context, plan *IntentionPlan) (*IntentionResult, error) {
	res := &IntentionResult{}
	if plan == nil {
		return res, errors.New("intentions: no plan")
	}
	if err := checkDesired(plan.Desired, plan.Cluster); err != nil {
		return res, err
	}
	via, live, err := c.liveIntentions(ctx, plan.Via)
	res.Via = via
	if err != nil {
		return res, err
	}
	p := planIntentions(plan.Desired, live, plan.Cluster)
	res.Keep, res.Conflicts = p.Keep, p.Conflicts
	if opens := p.Opens(); len(opens) > 0 {
		var lines []string
		for _, o := range opens {
			lines = append(lines, o.Line())
		}
		return res, fmt.Errorf("intentions: %w, nothing changed:\n%s", ErrIntentionConflict, strings.Join(lines, "\n"))
	}
	var allows, denies, deletes []intentionOp
	for _, i := range p.Create {
		op := intentionOp{op: "create", want: i}
		if i.Action == string(api.IntentionActionAllow) {
			allows = append(allows, op)
		} else {
			denies = append(denies, op)
		}
	}
	for _, u := range p.Update {
		op := intentionOp{op: "update", want: u.Want, id: u.ID, meta: u.Have.Meta}
		if u.Want.Action == string(api.IntentionActionAllow) {
			allows = append(allows, op)
		} else {
			denies = append(denies, op)
		}
	}
	for _, d := range p.Delete {
		deletes = append(deletes, intentionOp{op: "delete", want: d.intention(), id: d.ID})
	}
	return res, c.runIntentionPhases(ctx, via, plan.Cluster, res, allows, denies, deletes)
}

// DeleteIntentions deletes every intention marked as mtlsctl's for cluster
// (uninstall), and nothing else: the denies first, then the allows, so that
// wanted traffic is never denied while they go (without intentions Consul
// falls back to its default, allow unless ACLs say otherwise).
func (c *Cluster) DeleteIntentions(ctx context.Context, cluster string) (*IntentionResult, error) {
	res := &IntentionResult{}
	if cluster == "" {
		return res, errors.New("intentions: no cluster name")
	}
	via, live, err := c.liveIntentions(ctx, "")
	res.Via = via
	if err != nil {
		return res, err
	}
	var denies, others []intentionOp
	for _, l := range live {
		if !isOurs(l, cluster) {
			res.Keep++
			continue
		}
		op := intentionOp{op: "delete", want: l.intention(), id: l.ID}
		if l.Action == string(api.IntentionActionDeny) {
			denies = append(denies, op)
		} else {
			others = append(others, op)
		}
	}
	return res, c.runIntentionPhases(ctx, via, cluster, res, denies, others)
}

// runIntentionPhases runs each phase's writes, IntentionConcurrency at a
// time, and stops after a phase with a failure.
func (c *Cluster) runIntentionPhases(ctx context.Context, via, cluster string, res *IntentionResult, phases ...[]intentionOp) error {
	var failed []error
	for _, ops := range phases {
		if len(failed) > 0 || ctx.Err() != nil {
			res.Skipped += len(ops)
			continue
		}
		for _, f := range c.runIntentionOps(ctx, via, cluster, res, ops) {
			failed = append(failed, f)
		}
	}
	switch {
	case len(failed) > 0:
		msg := fmt.Sprintf("intentions: %d write(s) failed", len(failed))
		if res.Skipped > 0 {
			msg += fmt.Sprintf(", %d not tried", res.Skipped)
		}
		return fmt.Errorf("%s (run again to converge): %w", msg, errors.Join(failed...))
	case ctx.Err() != nil:
		return fmt.Errorf("intentions: %d write(s) not tried: %w", res.Skipped, ctx.Err())
	}
	return nil
}

// runIntentionOps runs ops, IntentionConcurrency at a time, counting what
// was done in res and returning the failures (also appended to res.Failed).
func (c *Cluster) runIntentionOps(ctx context.Context, via, cluster string, res *IntentionResult, ops []intentionOp) []*IntentionFailure {
	sem := make(chan struct{}, IntentionConcurrency)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []*IntentionFailure
	for _, op := range ops {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			mu.Lock()
			res.Skipped++
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := c.writeIntention(ctx, via, cluster, op)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && ctx.Err() != nil:
				res.Skipped++
			case err != nil:
				failed = append(failed, &IntentionFailure{Op: op.op, Intention: op.want, ID: op.id, Message: err.Error(), Err: err})
			case op.op == "create":
				res.Created++
			case op.op == "update":
				res.Updated++
			default:
				res.Deleted++
			}
		})
	}
	wg.Wait()
	slices.SortFunc(failed, func(a, b *IntentionFailure) int {
		return cmp.Or(cmp.Compare(a.Intention.Source, b.Intention.Source), cmp.Compare(a.Intention.Destination, b.Intention.Destination))
	})
	for _, f := range failed {
		res.Failed = append(res.Failed, *f)
	}
	return failed
}

// writeIntention makes one write through via's agent, with a deadline. It
// uses the ID-based endpoints (deprecated in the API package in favour of
// the /exact ones that Consul 1.6 lacks).
func (c *Cluster) writeIntention(ctx context.Context, via, cluster string, op intentionOp) error {
	cl, err := c.API(ctx, via)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	w := (&api.WriteOptions{}).WithContext(ctx)
	switch op.op {
	case "create":
		_, _, err = cl.Connect().IntentionCreate(apiIntention(op.want, cluster, nil), w)
	case "update":
		ixn := apiIntention(op.want, cluster, op.meta)
		ixn.ID = op.id
		_, err = cl.Connect().IntentionUpdate(ixn, w)
	case "delete":
		_, err = cl.Connect().IntentionDelete(op.id, w)
		if gone(err) {
			err = nil // already deleted: what was wanted
		}
	default:
		err = fmt.Errorf("unknown intention write %q", op.op)
	}
	return err
}

// gone says whether a delete failed because the intention no longer exists
// (Consul 1.6 answers 500 "Cannot modify non-existent intention").
func gone(err error) bool {
	var se api.StatusError
	if !errors.As(err, &se) {
		return false
	}
	return se.Code == http.StatusNotFound || strings.Contains(se.Body, "non-existent intention")
}

// apiIntention is want as Consul's API takes it, marked as mtlsctl's for
// cluster; meta (the live one, on update) keeps any other keys.
func apiIntention(want consulcfg.Intention, cluster string, meta map[string]string) *api.Intention {
	m := map[string]string{}
	for k, v := range meta {
		m[k] = v
	}
	m[consulcfg.IntentionMetaKey] = cluster
	return &api.Intention{
		SourceName:      want.Source,
		DestinationName: want.Destination,
		SourceType:      api.IntentionSourceConsul,
		Action:          api.IntentionAction(want.Action),
		Description:     want.Description,
		Meta:            m,
	}
}

// replicationWait bounds WaitIntentionsReplicated.
const replicationWait = 2 * time.Minute

// WaitIntentionsReplicated waits until every secondary datacenter holds
// each intention mtlsctl made for cluster in the primary (Consul
// replicates them, with the replication token when ACLs are on): a proxy
// in a secondary datacenter authorizes its connections against its own
// datacenter's copy, and without it would refuse every allowed one. A
// single datacenter returns at once.
func (c *Cluster) WaitIntentionsReplicated(ctx context.Context, cluster string) error {
	if !c.topo.MultiDC() {
		return nil
	}
	_, live, err := c.liveIntentions(ctx, "")
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, l := range live {
		if isOurs(l, cluster) {
			want[l.ID] = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, replicationWait)
	defer cancel()
	for _, dc := range c.topo.Cluster.Datacenters[1:] {
		for {
			missing := len(want)
			for _, n := range c.candidates(dc.Name) {
				var raw []*api.Intention
				err := c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
					var err error
					raw, _, err = cl.Connect().Intentions(q)
					return err
				})
				if err != nil {
					continue
				}
				missing = len(want)
				for _, r := range raw {
					if want[r.ID] {
						missing--
					}
				}
				break
			}
			if missing == 0 {
				break
			}
			t := time.NewTimer(pollInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("intentions: datacenter %s still lacks %d of the %d intentions after %s: check its servers' replication (the replication token, and their logs)", dc.Name, missing, len(want), replicationWait)
			case <-t.C:
			}
		}
	}
	return nil
}
