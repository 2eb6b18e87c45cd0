package distribute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/inventory"
	"github.com/pmezard/go-difflib/difflib"
)

// Action is what applying a bundle would do to one file.
type Action string

// File actions.
const (
	ActionCreate    Action = "create"
	ActionChange    Action = "change"    // content differs
	ActionMetadata  Action = "metadata"  // same content, mode or owner differs
	ActionUnchanged Action = "unchanged" // nothing to do
	ActionDelete    Action = "delete"    // mtlsctl installed it, the bundle no longer has it
)

// FilePlan is the plan for one file on one node. It never holds a secret:
// config diffs have the gossip key replaced by its fingerprint, keys are
// only said to change.
type FilePlan struct {
	Path   string         `json:"path"`
	Kind   consulcfg.Kind `json:"kind"`
	Action Action         `json:"action"`
	// OldMode/NewMode and OldOwner/NewOwner are set when they change.
	OldMode  string `json:"old_mode,omitempty"`
	NewMode  string `json:"new_mode,omitempty"`
	OldOwner string `json:"old_owner,omitempty"`
	NewOwner string `json:"new_owner,omitempty"`
	// Diff is a short unified diff for config, service and other files.
	Diff string `json:"diff,omitempty"`
	// OldFingerprint/NewFingerprint are certificate fingerprints.
	OldFingerprint string `json:"old_fingerprint,omitempty"`
	NewFingerprint string `json:"new_fingerprint,omitempty"`
	// Note says what the node holds in the file's place when it cannot be
	// shown: a symbolic link (never read through), something else than a
	// regular file, a file too large to diff, or one that changed while
	// it was planned.
	Note string `json:"note,omitempty"`
}

// NodePlan is the plan for one node.
type NodePlan struct {
	Node string `json:"node"`
	// Address is the SSH endpoint the node was reached at (host:port).
	Address string `json:"ssh_address"`
	// Generation is the bundle's; CurrentGeneration what the node recorded.
	Generation        string     `json:"target_generation"`
	CurrentGeneration string     `json:"current_generation,omitempty"`
	Files             []FilePlan `json:"files,omitempty"`
	// Mesh is what apply does to the node's proxies and firewall besides
	// the files (nil: nothing).
	Mesh *MeshPlan `json:"mesh,omitempty"`
	// Observed is a digest of what the node held when it was planned (its
	// generation, and each bundle path's type, hash, mode and owner). Apply
	// refuses a node whose digest changed since (ErrMoved).
	Observed string `json:"observed,omitempty"`
	// Uninstall is set in an uninstall plan: the node is to lose
	// everything mtlsctl installed.
	Uninstall bool `json:"uninstall,omitempty"`
	// Lock is set when another run holds the node's lock.
	Lock *LockInfo `json:"lock,omitempty"`
	// Unread lists the node state files the node did not read, each with
	// why (a symbolic link, a file too large): each counts as absent, and
	// apply replaces it.
	Unread []string `json:"unread,omitempty"`
	Error  string   `json:"error,omitempty"`
	// Err is the typed error (a *NodeError) when the node could not be planned.
	Err error `json:"-"`

	bundle *consulcfg.Bundle
	remote *remoteState
	// oldConfig holds the node's current agent config files that the
	// bundle changes, to decide between reload and restart.
	oldConfig map[string][]byte
}

// Changes reports whether applying would change anything on the node
// (files, or only the recorded generation).
func (n *NodePlan) Changes() bool {
	if n.Err != nil {
		return false
	}
	if n.Uninstall {
		// Nothing of mtlsctl's on the node: nothing to remove.
		return n.CurrentGeneration != "" || len(n.changedFiles()) > 0 || !n.Mesh.Empty()
	}
	return len(n.changedFiles()) > 0 || n.CurrentGeneration != n.Generation || !n.Mesh.Empty()
}

func (n *NodePlan) changedFiles() []FilePlan {
	var out []FilePlan
	for _, f := range n.Files {
		if f.Action != ActionUnchanged {
			out = append(out, f)
		}
	}
	return out
}

// PlanResult is the plan for every node, in cluster-file order.
type PlanResult struct {
	// Version is the saved-plan format's version (see SavePlan).
	Version int         `json:"version"`
	Cluster string      `json:"cluster"`
	Nodes   []*NodePlan `json:"nodes"`
	// Intentions is the intention diff (the caller fills it in: intentions
	// are the cluster's); IntentionsError says why it could not be read.
	Intentions      *consulapi.IntentionPlan `json:"intentions,omitempty"`
	IntentionsError string                   `json:"intentions_error,omitempty"`
}

// Changes reports whether any node has pending changes (for --detailed-exitcode).
func (p *PlanResult) Changes() bool {
	for _, n := range p.Nodes {
		if n.Changes() {
			return true
		}
	}
	return false
}

// Err joins the per-node errors (nil when every node was planned).
func (p *PlanResult) Err() error {
	var errs []error
	for _, n := range p.Nodes {
		if n.Err != nil {
			errs = append(errs, n.Err)
		}
	}
	return errors.Join(errs...)
}

// PlanOptions say what a plan gathers.
type PlanOptions struct {
	// Diffs downloads the changed files that are not keys to show a diff
	// (config files are always read: the reload-or-restart choice needs
	// them).
	Diffs bool
}

// Plan connects to every node that has a bundle and reports what Apply
// would do, changing nothing. Nodes that fail are reported in their
// NodePlan and in the returned error (errors.Join of *NodeError); the others
// are still planned.
func Plan(ctx context.Context, t *inventory.Topology, bundles []consulcfg.Bundle, o Options) (*PlanResult, error) {
	s, err := Open(t, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	p, err := s.Plan(ctx, bundles, PlanOptions{Diffs: true})
	if err != nil {
		return nil, err
	}
	return p, p.Err()
}

// nodesFor matches bundles to topology nodes, in topology order.
func (s *Session) nodesFor(bundles []consulcfg.Bundle) ([]*inventory.Node, map[string]*consulcfg.Bundle, error) {
	byNode := map[string]*consulcfg.Bundle{}
	for i := range bundles {
		b := &bundles[i]
		if s.topo.Node(b.Node) == nil {
			return nil, nil, fmt.Errorf("bundle for node %q: no such node in the cluster file", b.Node)
		}
		if _, dup := byNode[b.Node]; dup {
			return nil, nil, fmt.Errorf("two bundles for node %q", b.Node)
		}
		if err := checkBundle(b, s.stateDir()); err != nil {
			return nil, nil, err
		}
		byNode[b.Node] = b
	}
	var nodes []*inventory.Node
	for _, n := range s.topo.Nodes {
		if byNode[n.Name] != nil {
			nodes = append(nodes, n)
		}
	}
	return nodes, byNode, nil
}

func (s *Session) stateDir() string {
	if d := s.topo.Cluster.NodeStateDir; d != "" {
		return path.Clean(d)
	}
	return "/var/lib/mtlsctl"
}

// Plan reports, for every node that has a bundle, what Apply would do,
// changing nothing. Node failures are in the result (NodePlan.Err, and
// PlanResult.Err); the error is about the bundles themselves.
func (s *Session) Plan(ctx context.Context, bundles []consulcfg.Bundle, o PlanOptions) (*PlanResult, error) {
	diffs := o.Diffs
	nodes, byNode, err := s.nodesFor(bundles)
	if err != nil {
		return nil, err
	}
	res := &PlanResult{Version: planVersion, Cluster: s.topo.Cluster.Name}
	plans := map[string]*NodePlan{}
	for _, n := range nodes {
		np := &NodePlan{Node: n.Name, Address: s.addr(n), Generation: byNode[n.Name].Generation, bundle: byNode[n.Name], Uninstall: s.purge}
		plans[n.Name] = np
		res.Nodes = append(res.Nodes, np)
	}
	errs := s.forEach(ctx, nodes, 0, func(ctx context.Context, n *inventory.Node) error {
		return s.planNode(ctx, n, plans[n.Name], diffs)
	})
	for name, err := range errs {
		np := plans[name]
		np.Err = nodeErr(name, "plan", err)
		np.Error = np.Err.Error()
		s.report(name, "inspect", "", np.Err)
	}
	return res, nil
}

func (s *Session) planNode(ctx context.Context, n *inventory.Node, np *NodePlan, diffs bool) error {
	c, err := s.conn(ctx, n)
	if err != nil {
		return nodeErr(n.Name, "connect", err)
	}
	b := np.bundle
	var paths []string
	for _, f := range b.Files {
		paths = append(paths, f.Path)
	}
	s.report(n.Name, "inspect", "", nil)
	out, err := c.Run(ctx, "inspect", inspectMeshScript(paths, s.stateDir(), false, unitsOf(b.Mesh), b.Mesh != nil))
	if err != nil {
		return nodeErr(n.Name, "inspect", err)
	}
	r, err := parseInspect(out, s.o.LockTTL)
	if err != nil {
		return nodeErr(n.Name, "inspect", err)
	}
	np.remote = r
	np.CurrentGeneration = r.Generation
	np.Observed = r.digest(b, s.stateDir())
	np.Lock = r.Lock
	np.Unread = r.Unread
	var fetch []string
	for _, f := range b.Files {
		fp := comparePlan(f, r.file(f.Path))
		wantOld := (diffs && !f.Secret()) || f.Kind == consulcfg.KindConfig
		if rf := r.file(f.Path); wantOld && fp.Action == ActionChange && rf.Regular {
			if rf.Size > transport.MaxDownload {
				// Not read at all: the hash taken on the node says enough.
				fp.Note = fmt.Sprintf("changed, too large to diff (%d bytes, sha256 %s)", rf.Size, rf.SHA256)
			} else {
				fetch = append(fetch, f.Path)
			}
		}
		np.Files = append(np.Files, fp)
	}
	var oldMesh *consulcfg.Mesh
	if r.Manifest != nil {
		oldMesh = r.Manifest.Mesh
		// What mtlsctl installed that the bundle no longer has goes.
		for _, mf := range r.Manifest.Files {
			if b.File(mf.Path) != nil || reservedStatePath(mf.Path, s.stateDir()) || !r.file(mf.Path).Exists {
				continue
			}
			np.Files = append(np.Files, FilePlan{Path: mf.Path, Kind: mf.Kind, Action: ActionDelete})
		}
	}
	np.Mesh = planMesh(oldMesh, b.Mesh, r, np.Files)
	if len(fetch) == 0 {
		return nil
	}
	old, err := c.Download(ctx, fetch, transport.MaxDownload)
	for i := range np.Files {
		fp := &np.Files[i]
		f := b.File(fp.Path)
		d, ok := old[fp.Path]
		if !ok || (fp.Action != ActionChange) {
			continue
		}
		// Only the content inspect hashed is shown: a file swapped (for a
		// link, say) between inspect and the download is not.
		content, note := checkedContent(d, r.file(fp.Path).SHA256)
		if note != "" {
			if diffs {
				fp.Note = note
			}
			continue
		}
		if f.Kind == consulcfg.KindConfig {
			if np.oldConfig == nil {
				np.oldConfig = map[string][]byte{}
			}
			np.oldConfig[fp.Path] = content
		}
		if !diffs {
			continue
		}
		switch f.Kind {
		case consulcfg.KindCACert, consulcfg.KindCert:
			fp.OldFingerprint = certFingerprint(content)
		default:
			fp.Diff = shortDiff(fp.Path, content, f.Content)
		}
	}
	if err != nil {
		s.report(n.Name, "inspect", "could not download old files for the diff", err)
	}
	return nil
}

// checkedContent returns a downloaded file's content when it is what
// inspect hashed on the node (wantSHA), or else a note saying why it is
// not shown.
func checkedContent(d transport.Downloaded, wantSHA string) ([]byte, string) {
	switch {
	case errors.Is(d.Err, transport.ErrTooLarge):
		return nil, fmt.Sprintf("changed, too large to diff (%d bytes)", d.Size)
	case errors.Is(d.Err, transport.ErrNotRegular):
		return nil, "no diff: it stopped being a regular file while it was planned (plan again)"
	case d.Err != nil:
		return nil, fmt.Sprintf("no diff: cannot read it (%v)", d.Err)
	}
	sum := sha256.Sum256(d.Content)
	if wantSHA == "" || hex.EncodeToString(sum[:]) != wantSHA {
		return nil, "no diff: it changed on the node while it was planned (plan again)"
	}
	return d.Content, ""
}

// needsRestart is the default of Options.RestartNeeded: restart when the
// node never had an mtlsctl generation (the agent must be started, not
// reloaded) or when a changed agent config needs it (consulcfg.NeedsRestart;
// an old config that could not be read counts as needing it).
func (n *NodePlan) needsRestart() bool {
	if n.CurrentGeneration == "" {
		return true
	}
	for _, fp := range n.changedFiles() {
		if fp.Kind != consulcfg.KindConfig || fp.Action == ActionMetadata || fp.Action == ActionDelete {
			continue
		}
		old, ok := n.oldConfig[fp.Path]
		if !ok || consulcfg.NeedsRestart(old, n.bundle.File(fp.Path).Content) {
			return true
		}
	}
	return false
}

// comparePlan compares the bundle's file with what the node holds.
func comparePlan(f consulcfg.File, r *remoteFile) FilePlan {
	fp := FilePlan{Path: f.Path, Kind: f.Kind, Action: ActionUnchanged}
	if f.Kind == consulcfg.KindCACert || f.Kind == consulcfg.KindCert {
		fp.NewFingerprint = certFingerprint(f.Content)
	}
	switch {
	case !r.Exists:
		fp.Action = ActionCreate
		fp.NewMode = modeString(f.Mode)
		fp.NewOwner = ownerSpec(f.Owner, f.Group)
		if f.Kind != consulcfg.KindCACert && f.Kind != consulcfg.KindCert && !f.Secret() {
			fp.Diff = shortDiff(f.Path, nil, f.Content)
		}
		return fp
	case r.Link != "":
		// Neither the link's target nor its mode and owner matter: the
		// commit renames the new file over the link itself.
		fp.Action = ActionChange
		fp.Note = fmt.Sprintf("is a symbolic link to %s; apply replaces the link (its target is not read or changed)", r.Link)
		fp.NewMode, fp.NewOwner = modeString(f.Mode), ownerSpec(f.Owner, f.Group)
		return fp
	case !r.Regular:
		fp.Action = ActionChange
		fp.Note = "is not a regular file (a directory or special file); apply cannot replace it until it is removed"
		return fp
	case r.SHA256 != f.SHA256:
		fp.Action = ActionChange
	}
	if r.Mode.Perm() != f.Mode.Perm() {
		fp.OldMode, fp.NewMode = modeString(r.Mode), modeString(f.Mode)
	}
	if (f.Owner != "" && f.Owner != r.Owner) || (f.Group != "" && f.Group != r.Group) {
		fp.OldOwner, fp.NewOwner = r.Owner+":"+r.Group, ownerSpec(f.Owner, f.Group)
	}
	if fp.Action == ActionUnchanged && (fp.NewMode != "" || fp.NewOwner != "") {
		fp.Action = ActionMetadata
	}
	return fp
}

func modeString(m fs.FileMode) string { return fmt.Sprintf("%04o", m.Perm()) }

// redact replaces every gossip key with its fingerprint (consulcfg.Redact,
// the one definition of how a rendered config is shown).
func redact(b []byte) string { return string(consulcfg.Redact(b)) }

// maxDiffLines bounds a diff shown in a plan.
const maxDiffLines = 60

func shortDiff(name string, old, new []byte) string {
	d := difflib.UnifiedDiff{
		A:        difflib.SplitLines(redact(old)),
		B:        difflib.SplitLines(redact(new)),
		FromFile: "node:" + name,
		ToFile:   "bundle:" + name,
		Context:  2,
	}
	if len(old) == 0 {
		d.A = nil
	}
	text, err := difflib.GetUnifiedDiffString(d)
	if err != nil {
		return ""
	}
	lines := strings.SplitAfter(text, "\n")
	if len(lines) > maxDiffLines {
		text = strings.Join(lines[:maxDiffLines], "") + fmt.Sprintf("... (%d more lines)\n", len(lines)-maxDiffLines)
	}
	return text
}
