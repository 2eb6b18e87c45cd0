package distribute

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/inventory"
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
	Generation         string   `json:"generation"`
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

// Apply pushes every bundle to its node in two phases: stage and verify on
// every node (and, where the node has a consul binary, `consul validate` the
// configuration it would load), and only if all succeeded, commit each node
// (with backups) and reload or restart it in the same session: servers one
// at a time, then the other nodes; a server that fails leaves the others
// staged until a re-run finishes them. A node that
// fails staging makes Apply remove all staging and change nothing. A second
// Apply with nothing changed touches nothing. An apply interrupted earlier
// (its journal in JournalDir) is first finished or rolled back.
func Apply(ctx context.Context, t *inventory.Topology, bundles []consulcfg.Bundle, o Options) (*ApplyResult, error) {
	if o.JournalDir == "" {
		return nil, errors.New("distribute: Options.JournalDir is required for apply (a directory under the state dir)")
	}
	s, err := newSession(t, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	unlock, err := lockAdmin(s.o.JournalDir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	res := &ApplyResult{}
	if j, err := loadJournal(s.o.JournalDir); err != nil {
		return nil, err
	} else if j != nil {
		msg, err := s.recover(ctx, j)
		res.Recovered = msg
		if err != nil {
			return res, err
		}
	}

	p, err := s.plan(ctx, bundles, false)
	if err != nil {
		return res, err
	}
	var changed []*NodePlan
	for _, np := range p.Nodes {
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

func (s *session) apply(ctx context.Context, changed []*NodePlan, res *ApplyResult) error {
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
		return s.stageNode(ctx, n, j, contents[n.Name], gate)
	})
	if len(errs) > 0 {
		var all []error
		for _, n := range nodes {
			na := res.node(n.Name)
			if err := errs[n.Name]; err != nil && !errors.Is(err, ErrAborted) {
				na.Outcome, na.Err = OutcomeFailed, nodeErr(n.Name, "stage", err)
				all = append(all, na.Err)
			} else {
				na.Outcome, na.Err = OutcomeRolledBack, &NodeError{Node: n.Name, Step: "stage", Err: ErrAborted}
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
func (s *session) journalNode(np *NodePlan, runID string) (*journalNode, [][]byte) {
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
	return jn, contents
}

func (s *session) lockInfo(c *nodeConn, runID string) string {
	host, _ := os.Hostname()
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	return lockInfoText(runID, user, host, os.Getpid(), "apply", time.Now())
}

// stageNode takes the node lock, uploads every file into staging (all
// requests pipelined on one SFTP session), sets modes and owners and
// verifies every staged file's SHA-256 on the node.
func (s *session) stageNode(ctx context.Context, n *inventory.Node, j *journal, contents [][]byte, gate *lockGate) error {
	jn := j.node(n.Name)
	// Whatever happens to the first node before its lock is taken, the
	// others must not wait for it forever.
	defer gate.release(n.Name, errGateLeaderFailed)
	c, err := s.conn(ctx, n)
	if err != nil {
		return nodeErr(n.Name, "connect", err)
	}
	if c.sudo {
		home, err := c.homeDir(ctx)
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
	out, err := c.run(ctx, "lock", prepareScript(jn, j.RunID, s.lockInfo(c, j.RunID), s.o.ForceUnlock))
	var created []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		switch {
		case f[0] == markerCreated && len(f) == 2:
			created = append(created, f[1])
		case f[0] == markerLocked && len(f) == 3:
			return nodeErr(n.Name, "lock", fmt.Errorf("%w: %s", ErrLocked, parseLock(f[1], f[2], s.o.LockTTL)))
		}
	}
	if uerr := j.update(func() { jn.CreatedDirs = created }); uerr != nil {
		return uerr
	}
	if err != nil {
		return nodeErr(n.Name, "lock", err)
	}
	gate.release(n.Name, nil)

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
	out, err = c.run(ctx, "verify", verifyScript(jn, verifyOpts{configDir: configDir, runID: j.RunID, validate: vfiles, uploaded: done}))
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
			s.report(n.Name, "validate", "", nil)
			return nodeErr(n.Name, "validate", verr)
		}
		return nodeErr(n.Name, "verify", err)
	}
	if len(vfiles) > 0 {
		s.report(n.Name, "validate", "", nil)
		if strings.Contains(out, markerValid) {
			s.report(n.Name, "validate", "consul validate passed", nil)
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
func (s *session) upload(ctx context.Context, c *nodeConn, jn *journalNode, contents [][]byte) (uploadDone, error) {
	sc, err := c.sftp(ctx)
	if err != nil {
		return uploadDone{}, err
	}
	_, canSync := sc.HasExtension("fsync@openssh.com")
	// With sudo the files are copied into staging by the verify script,
	// which makes new files: their modes and sync are its job.
	done := uploadDone{modes: jn.UploadDir == "", synced: canSync && jn.UploadDir == ""}
	return done, c.step(ctx, "upload", func() error {
		if jn.UploadDir != "" {
			if err := sc.Mkdir(jn.UploadDir); err != nil {
				if fi, serr := sc.Stat(jn.UploadDir); serr != nil || !fi.IsDir() {
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

// writeRemote writes one file.
func writeRemote(sc sftpClient, dest string, content []byte, o writeOpts) error {
	f, err := sc.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
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
func (s *session) rollBack(ctx context.Context, j *journal, nodes []*inventory.Node) error {
	errs := s.forEach(ctx, nodes, 0, func(ctx context.Context, n *inventory.Node) error {
		jn := j.node(n.Name)
		c, err := s.conn(ctx, n)
		if err != nil {
			return nodeErr(n.Name, "cleanup", err)
		}
		s.report(n.Name, "cleanup", "removing staging", nil)
		if _, err := c.run(ctx, "cleanup", cleanupScript(jn, j.RunID)); err != nil {
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
func (s *session) finishAll(ctx context.Context, j *journal, res *ApplyResult) error {
	var servers, clients []*inventory.Node
	for _, jn := range j.Nodes {
		if jn.Reloaded {
			continue
		}
		n := s.topo.Node(jn.Node)
		if jn.Server && jn.ContentChanged {
			servers = append(servers, n)
		} else {
			clients = append(clients, n)
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
		if !jn.Committed {
			s.report(n.Name, "commit", "", nil)
			out, err := c.run(ctx, "commit", commitScript(jn, j.RunID, &reloadStep{command: cmd}))
			if !strings.Contains(out, markerCommitted) {
				if err == nil {
					err = errors.New("the commit script ended without confirming the commit")
				}
				return nodeErr(n.Name, "commit", err)
			}
			// One journal write records the commit and, when it also
			// succeeded, the reload.
			if uerr := j.update(func() { jn.Committed, jn.Reloaded = true, err == nil }); uerr != nil {
				return uerr
			}
			outcome(n.Name, OutcomeCommitted)
			s.report(n.Name, "reload", what, nil)
			if s.o.hooks != nil && s.o.hooks.afterCommit != nil {
				if herr := s.o.hooks.afterCommit(n.Name); herr != nil {
					killed.Store(true)
					return herr
				}
			}
			if err != nil {
				return nodeErr(n.Name, what, err)
			}
		} else {
			s.report(n.Name, "reload", what, nil)
			if _, err := c.run(ctx, "reload", reloadScript(cmd, jn.StateDir, j.RunID)); err != nil {
				return nodeErr(n.Name, what, err)
			}
		}
		if !jn.Reloaded {
			if err := j.update(func() { jn.Reloaded = true }); err != nil {
				return err
			}
		}
		outcome(n.Name, OutcomeDone)
		s.report(n.Name, "done", "", nil)
		return nil
	}
	errs := s.rollServers(ctx, j, servers, one)
	if len(errs) > 0 {
		// A server failed: leave the clients alone until it is fixed.
		for _, n := range clients {
			errs[n.Name] = &NodeError{Node: n.Name, Step: "commit", Err: fmt.Errorf("%w: a server failed first; rerun apply when it is fixed", ErrAborted)}
		}
	} else {
		errs = s.forEach(ctx, clients, 0, one)
	}
	if len(errs) == 0 {
		return nil
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
	return fmt.Errorf("files are committed but reload failed on some nodes; rerun apply to retry (journal %s): %w", j.path, errors.Join(all...))
}

// recover finishes or rolls back an apply that was interrupted (the process
// killed, or a node lost mid-commit): before any node committed, staging is
// removed everywhere; once committing began, the remaining nodes (whose
// staging was verified) are committed and reloaded.
func (s *session) recover(ctx context.Context, j *journal) (string, error) {
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

// rollServers runs one for each server, one at a time. When a server is to
// be restarted in a running cluster (its datacenter has a leader), the
// leader goes last and each restarted server must come back (its agent sees
// a leader, every server of its datacenter is an alive voter) before the
// next is touched; a server that does not come back stops the loop with a
// *RollError. On a first apply (no leader yet) the servers are simply
// started in cluster-file order.
func (s *session) rollServers(ctx context.Context, j *journal, servers []*inventory.Node, one func(context.Context, *inventory.Node) error) map[string]error {
	errs := map[string]error{}
	restart := false
	for _, n := range servers {
		jn := j.node(n.Name)
		restart = restart || (jn.Restart && jn.PreviousGeneration != "")
	}
	var cl *Cluster
	var h *Health
	if restart {
		cl = &Cluster{s: s, apis: map[string]*api.Client{}, bundles: map[string]*consulcfg.Bundle{}}
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		h, _ = cl.health(hctx, healthOpts{})
		cancel()
	}
	leader := func(dc string) string {
		if h == nil || h.DC(dc) == nil {
			return ""
		}
		return h.DC(dc).Leader
	}
	ordered := slices.Clone(servers)
	slices.SortStableFunc(ordered, func(a, b *inventory.Node) int {
		la, lb := a.Name == leader(a.Datacenter), b.Name == leader(b.Datacenter)
		switch {
		case la == lb:
			return 0
		case la:
			return 1
		}
		return -1
	})
	for i, n := range ordered {
		if err := one(ctx, n); err != nil {
			errs[n.Name] = err
			for _, rest := range ordered[i+1:] {
				errs[rest.Name] = &NodeError{Node: rest.Name, Step: "reload", Err: fmt.Errorf("%w: stopped after %s failed", ErrAborted, n.Name)}
			}
			return errs
		}
		jn := j.node(n.Name)
		if cl == nil || !jn.Restart || jn.PreviousGeneration == "" || leader(n.Datacenter) == "" {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, defaultWait)
		_, err := cl.waitServer(wctx, n, names(s.topo.Servers(n.Datacenter)))
		cancel()
		if err != nil {
			var untouched []string
			for _, rest := range ordered[i+1:] {
				untouched = append(untouched, rest.Name)
				errs[rest.Name] = &NodeError{Node: rest.Name, Step: "restart", Err: fmt.Errorf("%w: stopped after %s did not come back", ErrAborted, n.Name)}
			}
			errs[n.Name] = cl.rollError(ctx, n, nil, untouched, err)
			return errs
		}
	}
	return errs
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
