package distribute

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/inventory"
	"github.com/pkg/sftp"
)

// Node outcomes in an ApplyResult.
const (
	OutcomeUnchanged  = "unchanged"   // nothing to do
	OutcomeFailed     = "failed"      // see Error
	OutcomeRolledBack = "rolled-back" // staged, then staging removed: node unchanged
	OutcomeCommitted  = "committed"   // new files in place, reload pending or failed
	OutcomeDone       = "done"        // committed and reloaded/restarted
)

// NodeApply is what Apply did on one node.
type NodeApply struct {
	Node               string   `json:"node"`
	Generation         string   `json:"target_generation"`
	PreviousGeneration string   `json:"previous_generation,omitempty"`
	Outcome            string   `json:"outcome"`
	Changed            []string `json:"changed,omitempty"` // paths written
	// Action is the command run after the commit: "reload", "restart" or "".
	Action string `json:"action,omitempty"`
	Error  string `json:"error,omitempty"`
	// Err is the typed error (a *NodeError), nil on success.
	Err error `json:"-"`
}

// ApplyResult is the outcome of Apply.
type ApplyResult struct {
	RunID string `json:"run_id,omitempty"`
	// Changed is false when every node was reached and already held its
	// bundle: nothing was staged, committed or reloaded. It is true when
	// changes were pending, also when the apply then failed.
	Changed bool `json:"changed"`
	// Recovered says what was done about an interrupted earlier apply.
	Recovered string       `json:"recovered,omitempty"`
	Nodes     []*NodeApply `json:"nodes"`
}

// errKilled is returned by test hooks to make Apply stop as if the process
// had been killed at that point.
var errKilled = errors.New("simulated crash")

// Apply is Open, Recover, Plan and Session.Apply in one call: it pushes
// every bundle to its node (see Session.Apply). An apply interrupted
// earlier (its journal in JournalDir) is first finished or rolled back.
func Apply(ctx context.Context, t *inventory.Topology, bundles []consulcfg.Bundle, o Options) (*ApplyResult, error) {
	s, err := Open(t, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	recovered, err := s.Recover(ctx)
	if err != nil {
		return &ApplyResult{Recovered: recovered}, err
	}
	p, err := s.Plan(ctx, bundles, PlanOptions{})
	if err != nil {
		return &ApplyResult{Recovered: recovered}, err
	}
	res, err := s.Apply(ctx, p)
	if res != nil {
		res.Recovered = recovered
	}
	return res, err
}

// Apply carries out exactly the plan p (made by Plan in this session, or
// loaded with LoadPlan and matched to the bundles with Attach): it changes
// the files the plan lists on the nodes the plan lists, nothing else. It
// works in two phases: stage and verify on every node (and, where the node
// has a consul binary, `consul validate` the configuration it would load),
// and only if all succeeded, commit each node (with backups) and reload or
// restart it in the same step, through the one rolling engine: servers one
// at a time, then the other nodes. Each node's lock is taken before
// anything is written, and the node must then still hold exactly what the
// plan saw (else ErrMoved, and nothing changes anywhere). A node that fails
// staging makes Apply remove all staging and change nothing. The caller
// holds the state directory's lock.
func (s *Session) Apply(ctx context.Context, p *PlanResult) (*ApplyResult, error) {
	if s.o.JournalDir == "" {
		return nil, errors.New("distribute: Options.JournalDir is required for apply (a directory under the state dir)")
	}
	if j, err := loadJournal(s.o.JournalDir); err != nil {
		return nil, err
	} else if j != nil {
		return nil, fmt.Errorf("an interrupted apply (run %s, journal %s) must be finished first: call Recover", j.RunID, j.path)
	}
	res := &ApplyResult{}
	var changed []*NodePlan
	for _, np := range p.Nodes {
		if np.bundle == nil {
			return nil, fmt.Errorf("%w: node %s has no bundle attached to the plan", ErrStalePlan, np.Node)
		}
		na := &NodeApply{Node: np.Node, Generation: np.Generation, PreviousGeneration: np.CurrentGeneration, Outcome: OutcomeUnchanged}
		if np.Err != nil {
			na.Outcome, na.Err, na.Error = OutcomeFailed, np.Err, np.Error
		} else if np.Changes() {
			changed = append(changed, np)
			for _, f := range np.changedFiles() {
				na.Changed = append(na.Changed, f.Path)
			}
		}
		res.Nodes = append(res.Nodes, na)
	}
	if err := p.Err(); err != nil {
		// Not "nothing to do": some nodes could not even be looked at.
		res.Changed = true
		return res, fmt.Errorf("no node was changed: %w", err)
	}
	if len(changed) == 0 {
		return res, nil
	}
	res.Changed = true
	return res, s.apply(ctx, changed, res)
}

func newRunID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *ApplyResult) node(name string) *NodeApply {
	for _, n := range r.Nodes {
		if n.Node == name {
			return n
		}
	}
	return nil
}

func (s *Session) apply(ctx context.Context, changed []*NodePlan, res *ApplyResult) error {
	plans := map[string]*NodePlan{}
	for _, np := range changed {
		plans[np.Node] = np
	}
	host, _ := os.Hostname()
	j := &journal{Version: 1, RunID: newRunID(), AdminHost: host, PID: os.Getpid(), Started: time.Now().UTC(), Phase: phaseStaging,
		path: path.Join(s.o.JournalDir, journalName)}
	res.RunID = j.RunID
	contents := map[string][][]byte{}
	var nodes []*inventory.Node
	for _, np := range changed {
		n := s.topo.Node(np.Node)
		nodes = append(nodes, n)
		jn, content := s.journalNode(np, j.RunID)
		j.Nodes = append(j.Nodes, jn)
		contents[n.Name] = content
		if jn.ContentChanged {
			res.node(n.Name).Action = "reload"
			if jn.Restart {
				res.node(n.Name).Action = "restart"
			}
		}
	}
	if err := j.update(nil); err != nil {
		return err
	}

	// Phase 1: stage and verify everywhere.
	gate := newLockGate(nodes[0].Name)
	errs := s.forEach(ctx, nodes, 0, func(ctx context.Context, n *inventory.Node) error {
		return s.stageNode(ctx, n, j, plans[n.Name], contents[n.Name], gate)
	})
	if len(errs) > 0 {
		var all []error
		for _, n := range nodes {
			na := res.node(n.Name)
			if err := errs[n.Name]; err != nil && !errors.Is(err, ErrAborted) {
				na.Outcome, na.Err = OutcomeFailed, nodeErr(n.Name, "stage", err)
				all = append(all, na.Err)
			} else {
				na.Outcome, na.Err = OutcomeRolledBack, &NodeError{Node: n.Name, Op: "stage", Err: ErrAborted}
			}
			na.Error = na.Err.Error()
		}
		if err := j.update(func() { j.Phase = phaseAborting }); err != nil {
			return errors.Join(append(all, err)...)
		}
		if err := s.rollBack(ctx, j, nodes); err != nil {
			all = append(all, err)
		}
		return fmt.Errorf("staging failed, no node was changed: %w", errors.Join(all...))
	}

	// Phase 2: commit and reload (servers one at a time), one session per
	// node. Nothing was committed anywhere before every node staged and
	// verified.
	if err := j.update(func() { j.Phase = phaseCommitting }); err != nil {
		return err
	}
	if err := s.finishAll(ctx, j, res); err != nil {
		return err
	}
	return j.finish()
}

// journalNode builds a node's journal entry and the contents to upload, in
// the same order: changed files, then the state files (generation last).
func (s *Session) journalNode(np *NodePlan, runID string) (*journalNode, [][]byte) {
	n := s.topo.Node(np.Node)
	jn := &journalNode{Node: n.Name, Server: n.IsServer(), Generation: np.Generation, PreviousGeneration: np.CurrentGeneration,
		StateDir: s.stateDir(), Stage: stagePrefix + runID}
	var contents [][]byte
	add := func(f consulcfg.File) {
		jn.Files = append(jn.Files, journalFile{Path: f.Path, Staged: path.Join(path.Dir(f.Path), jn.Stage, path.Base(f.Path)),
			SHA256: f.SHA256, Mode: uint32(f.Mode.Perm()), Owner: f.Owner, Group: f.Group})
		contents = append(contents, f.Content)
	}
	var paths []string
	for _, fp := range np.changedFiles() {
		if fp.Action == ActionDelete {
			continue // the mesh step deletes it, after stopping what uses it
		}
		add(*np.bundle.File(fp.Path))
		paths = append(paths, fp.Path)
		jn.ContentChanged = true
	}
	for _, f := range stateFiles(np.bundle, jn.StateDir) {
		add(f)
	}
	if jn.ContentChanged {
		if s.o.RestartNeeded != nil {
			jn.Restart = s.o.RestartNeeded(n.Name, paths)
		} else {
			jn.Restart = np.needsRestart()
		}
	}
	jn.Mesh = newMeshStep(np, s.purge)
	return jn, contents
}

func (s *Session) lockInfo(c *transport.Conn, runID string) string {
	host, _ := os.Hostname()
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	return lockInfoText(runID, user, host, os.Getpid(), "apply", time.Now(), procIdentity(), procStart(os.Getpid()))
}

// takeLock runs the prepare step: it takes the node lock for runID and
// creates the staging directories, and returns the target directories it
// created. When another run holds the lock, the holder is judged here, on
// the admin machine (decideUnlock), and with Options.ForceUnlock allowing
// it, the step runs once more, removing the lock only if it still names
// that run.
func (s *Session) takeLock(ctx context.Context, c *transport.Conn, n *inventory.Node, jn *journalNode, runID string) ([]string, error) {
	forceRun := ""
	for {
		out, err := c.Run(ctx, "lock", prepareScript(jn, runID, s.lockInfo(c, runID), forceRun))
		var created []string
		var held *LockInfo
		for _, line := range strings.Split(out, "\n") {
			f := strings.Split(line, "\t")
			switch {
			case f[0] == markerCreated && len(f) == 2:
				created = append(created, f[1])
			case f[0] == markerLocked && len(f) == 3:
				held = parseLock(f[1], f[2], s.o.LockTTL)
			}
		}
		if held == nil {
			if se, ok := asScriptError(err); ok && se.Code == exitStatus("EX_UNSAFE_DIR") {
				// The step names every such directory and what to do about it.
				return created, nodeErr(n.Name, "stage", fmt.Errorf("%w: %s", ErrUnsafeDir, strings.TrimSpace(se.Stderr)))
			}
			if err != nil {
				return created, nodeErr(n.Name, "lock", err)
			}
			return created, nil
		}
		if forceRun != "" {
			// Taken again by yet another run in between: judge no further.
			return nil, nodeErr(n.Name, "lock", fmt.Errorf("%w: %s", ErrLocked, held))
		}
		if derr := decideUnlock(held, s.o.ForceUnlock, jn.StateDir); derr != nil {
			return nil, nodeErr(n.Name, "lock", derr)
		}
		s.report(n.Name, "lock", "taking over the lock of run "+held.RunID+" ("+held.Holder+")", nil)
		forceRun = held.RunID
	}
}

// stageNode takes the node lock, uploads every file into staging (all
// requests pipelined on one SFTP session), sets modes and owners and
// verifies every staged file's SHA-256 on the node.
func (s *Session) stageNode(ctx context.Context, n *inventory.Node, j *journal, np *NodePlan, contents [][]byte, gate *lockGate) error {
	jn := j.node(n.Name)
	// Whatever happens to the first node before its lock is taken, the
	// others must not wait for it forever.
	defer gate.release(n.Name, errGateLeaderFailed)
	c, err := s.conn(ctx, n)
	if err != nil {
		return nodeErr(n.Name, "connect", err)
	}
	if c.Sudo() {
		home, err := c.HomeDir(ctx)
		if err != nil {
			return nodeErr(n.Name, "stage", err)
		}
		if err := j.update(func() { jn.UploadDir = path.Join(home, uploadPrefix+j.RunID) }); err != nil {
			return err
		}
	}
	if err := gate.wait(ctx, n.Name); err != nil {
		return nodeErr(n.Name, "lock", err)
	}
	s.report(n.Name, "lock", "", nil)
	// The directories a failed prepare step made are recorded too, for
	// the cleanup.
	created, err := s.takeLock(ctx, c, n, jn, j.RunID)
	if uerr := j.update(func() { jn.CreatedDirs = created }); uerr != nil {
		return uerr
	}
	if err != nil {
		return err
	}
	gate.release(n.Name, nil)
	if err := s.checkUnmoved(ctx, c, np); err != nil {
		return nodeErr(n.Name, "lock", err)
	}

	s.report(n.Name, "stage", fmt.Sprintf("%d files", len(jn.Files)), nil)
	done, err := s.upload(ctx, c, jn, contents)
	if err != nil {
		// OpenSSH's sftp-server reports ENOSPC as a bare "Failure": say
		// what the user can act on.
		if hint := s.spaceHint(ctx, c, jn, contents); hint != "" {
			err = fmt.Errorf("%w (%s)", err, hint)
		}
		return nodeErr(n.Name, "stage", err)
	}
	// Verify and, where Consul config files are staged, `consul validate`
	// in one session.
	s.report(n.Name, "verify", "", nil)
	configDir := s.topo.Cluster.Consul.ConfigDir
	vfiles := validateConfigFiles(jn, configDir)
	out, err := c.Run(ctx, "verify", verifyScript(jn, verifyOpts{configDir: configDir, runID: j.RunID, validate: vfiles, uploaded: done}))
	got := parseHashes(out)
	for i, f := range jn.Files {
		h := ""
		if i < len(got) {
			h = got[i]
		}
		if h != f.SHA256 {
			if err != nil && s.validateError(err, j.RunID) == nil {
				return nodeErr(n.Name, "verify", err)
			}
			return nodeErr(n.Name, "verify", fmt.Errorf("%w: %s staged with sha256 %q, want %s", ErrVerify, f.Path, h, f.SHA256))
		}
	}
	if err != nil {
		if verr := s.validateError(err, j.RunID); verr != nil {
			s.report(n.Name, "validate", "", verr)
			return nodeErr(n.Name, "validate", verr)
		}
		return nodeErr(n.Name, "verify", err)
	}
	if len(vfiles) > 0 {
		// One line: what was checked, or that nothing could be.
		switch {
		case strings.Contains(out, markerValid):
			s.report(n.Name, "validate", "consul validate passed", nil)
		case strings.Contains(out, markerNoConsul):
			s.report(n.Name, "validate", "no consul binary on the node: not validated", nil)
		}
	}
	if err := j.update(func() { jn.Staged = true }); err != nil {
		return err
	}
	if s.o.hooks != nil && s.o.hooks.afterStage != nil {
		s.o.hooks.afterStage(n.Name)
	}
	return nil
}

// uploadDone says what the SFTP upload already did to the staged files, so
// that the verify script need not do it again.
type uploadDone struct {
	modes  bool // each file has its final mode (fsetstat on its handle)
	synced bool // each file was fsynced (fsync@openssh.com)
}

// upload writes every file concurrently on the node's one SFTP session:
// open, write, set the mode (when the files go straight into staging),
// fsync@openssh.com (when offered), close, for all files at once, so the
// batch costs about as many round trips as one file and the node runs no
// process for the modes or the sync.
func (s *Session) upload(ctx context.Context, c *transport.Conn, jn *journalNode, contents [][]byte) (uploadDone, error) {
	sc, err := c.SFTP(ctx)
	if err != nil {
		return uploadDone{}, err
	}
	_, canSync := sc.HasExtension("fsync@openssh.com")
	// With sudo the files are copied into staging by the verify script,
	// which makes new files: their modes and sync are its job.
	done := uploadDone{modes: jn.UploadDir == "", synced: canSync && jn.UploadDir == ""}
	return done, c.Step(ctx, "upload", func() error {
		if jn.UploadDir != "" {
			if err := sc.Mkdir(jn.UploadDir); err != nil {
				// Lstat: a symbolic link in its place is not our directory.
				if fi, serr := sc.Lstat(jn.UploadDir); serr != nil || !fi.IsDir() {
					return fmt.Errorf("create %s: %w", jn.UploadDir, err)
				}
			}
			// sftp-server makes directories 0777 and files 0666 less its
			// umask (often 022): close the directory to other users before
			// any key goes into it.
			if err := sc.Chmod(jn.UploadDir, 0o700); err != nil {
				return fmt.Errorf("chmod 700 %s: %w", jn.UploadDir, err)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, len(jn.Files))
		for i, f := range jn.Files {
			dest := f.Staged
			if jn.UploadDir != "" {
				dest = path.Join(jn.UploadDir, f.upload(i))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = writeRemote(sc, dest, contents[i], writeOpts{setMode: done.modes, mode: os.FileMode(f.Mode).Perm(), sync: canSync})
				if errs[i] != nil {
					errs[i] = fmt.Errorf("write %s: %w", f.Path, errs[i])
				}
			}()
		}
		wg.Wait()
		var first error
		failed := 0
		for _, err := range errs {
			if err != nil {
				failed++
				if first == nil {
					first = err
				}
			}
		}
		if failed > 1 {
			return fmt.Errorf("%w (and %d more files)", first, failed-1)
		}
		return first
	})
}

// writeOpts is what writeRemote does besides writing.
type writeOpts struct {
	setMode bool        // set mode on the open handle
	mode    os.FileMode // permission bits
	sync    bool        // fsync@openssh.com before closing
}

// writeRemote writes one new file. O_EXCL: the staging (or upload)
// directory was just made empty, so an existing entry is not ours, and the
// open must neither truncate it nor follow it if it is a symbolic link
// (SFTP has no O_NOFOLLOW; O_CREAT|O_EXCL never follows the last
// component).
func writeRemote(sc *sftp.Client, dest string, content []byte, o writeOpts) error {
	f, err := sc.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if o.setMode {
		if err := f.Chmod(o.mode); err != nil {
			f.Close()
			return fmt.Errorf("chmod %04o: %w", o.mode, err)
		}
	}
	if o.sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// rollBack removes all staging of the journal's nodes and releases their
// locks. The journal is retired only when every node is clean.
func (s *Session) rollBack(ctx context.Context, j *journal, nodes []*inventory.Node) error {
	errs := s.forEach(ctx, nodes, 0, func(ctx context.Context, n *inventory.Node) error {
		jn := j.node(n.Name)
		c, err := s.conn(ctx, n)
		if err != nil {
			return nodeErr(n.Name, "cleanup", err)
		}
		s.report(n.Name, "cleanup", "removing staging", nil)
		if _, err := c.Run(ctx, "cleanup", cleanupScript(jn, j.RunID)); err != nil {
			return nodeErr(n.Name, "cleanup", err)
		}
		return nil
	})
	if len(errs) > 0 {
		var all []error
		for _, n := range nodes {
			if err := errs[n.Name]; err != nil {
				all = append(all, err)
			}
		}
		return fmt.Errorf("staging could not be removed everywhere; the journal %s is kept and the next apply retries the cleanup: %w",
			j.path, errors.Join(all...))
	}
	return j.finish()
}

// finishAll commits every journal node not yet committed and runs its
// reload or restart, both in one session per node: servers one at a time
// (see rollServers), then the other nodes concurrently; each node's lock
// is released at the end of its session. It runs only once every node
// staged and verified (journal phase committing): past this point the apply
// only moves forward, and failures leave the journal in place so that a
// re-run finishes the rest. When a server fails, the other nodes are left
// staged and locked until a re-run.
func (s *Session) finishAll(ctx context.Context, j *journal, res *ApplyResult) error {
	var nodes []string
	for _, jn := range j.Nodes {
		if !jn.Reloaded || (jn.Mesh != nil && !jn.MeshDone) {
			nodes = append(nodes, jn.Node)
		}
	}
	outcome := func(node, o string) {
		if res == nil {
			return
		}
		if na := res.node(node); na != nil {
			na.Outcome = o
		}
	}
	var killed atomic.Bool
	one := func(ctx context.Context, n *inventory.Node) error {
		if killed.Load() {
			return errKilled
		}
		jn := j.node(n.Name)
		cmd, what := "", ""
		if jn.ContentChanged {
			cmd, what = s.topo.Cluster.Consul.ReloadCommand, "reload"
			if jn.Restart {
				cmd, what = s.topo.Cluster.Consul.RestartCommand, "restart"
			}
		}
		c, err := s.conn(ctx, n)
		if err != nil {
			return nodeErr(n.Name, "connect", err)
		}
		var out string
		if !jn.Committed {
			s.report(n.Name, "commit", "", nil)
			out, err = c.Run(ctx, "commit", commitScript(jn, j.RunID, s.topo.Cluster.Backups.Keep, &reloadStep{command: cmd, fallback: s.fallback(jn)}))
			if !strings.Contains(out, markerCommitted) {
				if err == nil {
					err = errors.New("the commit step ended without confirming the commit")
				}
				return nodeErr(n.Name, "commit", err)
			}
			// One journal write records the commit and, when it also
			// succeeded, the reload.
			if uerr := j.update(func() { jn.Committed, jn.Reloaded = true, err == nil }); uerr != nil {
				return uerr
			}
			outcome(n.Name, OutcomeCommitted)
			if s.o.hooks != nil && s.o.hooks.afterCommit != nil {
				if herr := s.o.hooks.afterCommit(n.Name); herr != nil {
					killed.Store(true)
					return herr
				}
			}
		} else if !jn.Reloaded {
			out, err = c.Run(ctx, orStep(what, "release"), reloadKeepScript(cmd, s.fallback(jn), jn.StateDir, j.RunID, jn.Mesh != nil && !jn.MeshDone))
		}
		if strings.Contains(out, markerStarted) {
			// The reload found the agent stopped: it was started instead.
			what = "start"
			if res != nil {
				if na := res.node(n.Name); na != nil {
					na.Action = "start"
				}
			}
		}
		s.report(n.Name, orStep(what, "commit"), "", err)
		if err != nil {
			return nodeErr(n.Name, what, err)
		}
		if !jn.Reloaded {
			if err := j.update(func() { jn.Reloaded = true }); err != nil {
				return err
			}
		}
		if jn.Mesh != nil && !jn.MeshDone {
			// The mesh step follows once every agent is back (below).
			return nil
		}
		outcome(n.Name, OutcomeDone)
		s.report(n.Name, "done", "", nil)
		return nil
	}
	// Servers one at a time through the rolling engine; a server that is
	// restarted in a running cluster is waited for before the next one
	// (its datacenter's leader last). On a first apply there is no leader
	// to keep, and the servers simply start in cluster-file order.
	errs := s.Live().Roll(ctx, nodes, consulapi.RollOptions{
		Bootstrap: true,
		WaitAfter: func(node string) bool {
			jn := j.node(node)
			return jn.Server && jn.ContentChanged && jn.Restart && jn.PreviousGeneration != ""
		},
	}, one)
	if len(errs) == 0 {
		errs = s.finishMesh(ctx, j, outcome)
	}
	if len(errs) == 0 {
		return nil
	}
	if err := errs[""]; err != nil {
		return err
	}
	var all []error
	uncommitted := false
	for _, jn := range j.Nodes {
		err := errs[jn.Node]
		if err == nil {
			continue
		}
		if errors.Is(err, errKilled) {
			return errKilled
		}
		if errors.Is(err, consulapi.ErrNotTouched) {
			err = &NodeError{Node: jn.Node, Op: "commit", Err: fmt.Errorf("%w: %v; rerun apply when it is fixed", ErrAborted, errors.Unwrap(err))}
		}
		all = append(all, err)
		uncommitted = uncommitted || !jn.Committed
		if res != nil {
			if na := res.node(jn.Node); na != nil {
				na.Err, na.Error = err, err.Error()
				if !jn.Committed {
					na.Outcome = OutcomeFailed
				}
			}
		}
	}
	if uncommitted {
		return fmt.Errorf("every node staged and verified, but some are not committed yet; rerun apply to finish (journal %s): %w", j.path, errors.Join(all...))
	}
	return fmt.Errorf("files are committed but the reload or the mesh step failed on some nodes; rerun apply to retry (journal %s): %w", j.path, errors.Join(all...))
}

// meshWait bounds the wait for a leader before the proxies start.
const meshWait = 2 * time.Minute

// finishMesh runs the mesh step of every node that has one pending, once
// every node is committed and reloaded and the cluster has its leaders: a
// proxy started before its agent can reach a leader gets no certificate
// and backs off for a long time. Nodes run concurrently; restarts of one
// proxy class still go one node at a time.
func (s *Session) finishMesh(ctx context.Context, j *journal, outcome func(node, o string)) map[string]error {
	var nodes []*inventory.Node
	for _, jn := range j.Nodes {
		if jn.Mesh != nil && !jn.MeshDone {
			nodes = append(nodes, s.topo.Node(jn.Node))
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	if !s.o.NoAgents && !j.node(nodes[0].Name).Mesh.Purge {
		wctx, cancel := context.WithTimeout(ctx, meshWait)
		_, err := s.Live().WaitHealthy(wctx, consulapi.Want{})
		if err == nil {
			err = s.waitConnectCA(wctx, j, nodes)
		}
		cancel()
		if err == nil && s.beforeMesh != nil {
			err = s.beforeMesh(ctx)
		}
		if err != nil {
			errs := map[string]error{}
			for _, n := range nodes {
				errs[n.Name] = nodeErr(n.Name, "mesh", fmt.Errorf("%w: the proxies start once the cluster is healthy and the intentions are written: %v", ErrAborted, err))
			}
			return errs
		}
	}
	return s.forEach(ctx, nodes, 0, func(ctx context.Context, n *inventory.Node) error {
		jn := j.node(n.Name)
		c, err := s.conn(ctx, n)
		if err != nil {
			return nodeErr(n.Name, "connect", err)
		}
		if err := s.runMesh(ctx, c, n, jn, j.RunID); err != nil {
			s.report(n.Name, "mesh", "", err)
			return nodeErr(n.Name, "mesh", err)
		}
		if err := j.update(func() { jn.MeshDone = true }); err != nil {
			return err
		}
		outcome(n.Name, OutcomeDone)
		s.report(n.Name, "done", "", nil)
		return nil
	})
}

// waitConnectCA waits, in every datacenter with a node about to start
// proxies, until an agent there can issue a Connect leaf certificate for
// one of them.
func (s *Session) waitConnectCA(ctx context.Context, j *journal, nodes []*inventory.Node) error {
	seen := map[string]bool{}
	for _, n := range nodes {
		st := j.node(n.Name).Mesh
		if seen[n.Datacenter] || len(st.Sidecars) == 0 {
			continue
		}
		seen[n.Datacenter] = true
		service := strings.TrimSuffix(st.Sidecars[0], "-sidecar-proxy")
		s.report(n.Name, "mesh", "waiting for datacenter "+n.Datacenter+"'s Connect CA", nil)
		if err := s.Live().WaitLeaf(ctx, n.Name, service); err != nil {
			return err
		}
	}
	return nil
}

// fallback is the command that starts a stopped agent when its reload
// fails: the restart command, for a node that already holds an mtlsctl
// generation (a first apply restarts anyway).
func (s *Session) fallback(jn *journalNode) string {
	if !jn.ContentChanged || jn.Restart {
		return ""
	}
	return s.topo.Cluster.Consul.RestartCommand
}

func orStep(what, def string) string {
	if what == "" {
		return def
	}
	return what
}

// Recover finishes or rolls back an apply that was interrupted (the process
// killed, or a node lost mid-commit), as recorded in the journal under
// JournalDir: before any node committed, staging is removed everywhere;
// once committing began, the remaining nodes (whose staging was verified)
// are committed and reloaded. It returns what it did ("" when there was
// nothing to recover). The caller holds the state directory's lock.
func (s *Session) Recover(ctx context.Context) (string, error) {
	if s.o.JournalDir == "" {
		return "", nil
	}
	j, err := loadJournal(s.o.JournalDir)
	if err != nil || j == nil {
		return "", err
	}
	var nodes []*inventory.Node
	for _, jn := range j.Nodes {
		n := s.topo.Node(jn.Node)
		if n == nil {
			return "", fmt.Errorf("the interrupted apply %s (journal %s) names node %q, which the cluster file no longer has: restore the node in the file to let mtlsctl finish, or clean it by hand",
				j.RunID, j.path, jn.Node)
		}
		nodes = append(nodes, n)
	}
	switch j.Phase {
	case phaseStaging, phaseAborting:
		if err := s.rollBack(ctx, j, nodes); err != nil {
			return "", fmt.Errorf("interrupted apply %s: %w", j.RunID, err)
		}
		return fmt.Sprintf("rolled back the interrupted apply %s (no node had committed)", j.RunID), nil
	case phaseCommitting, phaseReloading:
		if err := s.finishAll(ctx, j, nil); err != nil {
			return "", fmt.Errorf("interrupted apply %s: %w", j.RunID, err)
		}
		if err := j.finish(); err != nil {
			return "", err
		}
		return fmt.Sprintf("finished the interrupted apply %s (committed and reloaded the remaining nodes)", j.RunID), nil
	default:
		return "", fmt.Errorf("apply journal %s has unknown phase %q", j.path, j.Phase)
	}
}

// errGateLeaderFailed is what the other nodes see when the first node's
// staging failed before its lock was taken.
var errGateLeaderFailed = fmt.Errorf("%w: the first node's lock could not be taken", ErrAborted)

// lockGate makes every node wait for the first node's lock before taking
// its own. Two admins applying the same cluster both start with the same
// node, so one of them wins it and the other stops there, touching no other
// node; without the gate each could take some nodes' locks and both fail.
// It costs one lock round trip, paid once per apply.
type lockGate struct {
	leader string
	done   chan struct{}
	once   sync.Once
	err    error
}

func newLockGate(leader string) *lockGate {
	return &lockGate{leader: leader, done: make(chan struct{})}
}

// release records the leader's lock outcome; only its first call counts,
// and calls for other nodes are ignored.
func (g *lockGate) release(node string, err error) {
	if node != g.leader {
		return
	}
	g.once.Do(func() {
		g.err = err
		close(g.done)
	})
}

// wait returns once the leader holds its lock (nil for the leader itself),
// or ErrAborted when the leader failed.
func (g *lockGate) wait(ctx context.Context, node string) error {
	if node == g.leader {
		return nil
	}
	select {
	case <-g.done:
		if g.err != nil {
			return fmt.Errorf("%w: node %s could not be locked first", ErrAborted, g.leader)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkUnmoved inspects the node again, now that this run holds its lock,
// and returns ErrMoved when it no longer holds what the plan saw: the plan
// the user confirmed (or saved) is applied exactly, or not at all.
func (s *Session) checkUnmoved(ctx context.Context, c *transport.Conn, np *NodePlan) error {
	if np.Observed == "" {
		return fmt.Errorf("%w: the plan has no record of what node %s held", ErrMoved, np.Node)
	}
	var paths []string
	for _, f := range np.bundle.Files {
		paths = append(paths, f.Path)
	}
	out, err := c.Run(ctx, "inspect", inspectScript(paths, s.stateDir(), false))
	if err != nil {
		return err
	}
	r, err := parseInspect(out, s.o.LockTTL)
	if err != nil {
		return err
	}
	if got := r.digest(np.bundle, s.stateDir()); got != np.Observed {
		what := "its files"
		if r.Generation != np.CurrentGeneration {
			what = fmt.Sprintf("its generation (%s then, %s now)", orNoneGen(np.CurrentGeneration), orNoneGen(r.Generation))
		}
		return fmt.Errorf("%w: node %s changed %s since the plan; nothing was changed anywhere: plan again", ErrMoved, np.Node, what)
	}
	return nil
}

func orNoneGen(g string) string {
	if g == "" {
		return "none"
	}
	return g
}
