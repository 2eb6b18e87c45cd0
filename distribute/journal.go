package distribute

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
)

// Journal phases. The journal exists only while an apply is unfinished.
const (
	phaseStaging    = "staging"    // no node committed: roll back
	phaseAborting   = "aborting"   // staging failed somewhere: roll back
	phaseCommitting = "committing" // every node staged and verified: roll forward (commit and reload per node)
	phaseReloading  = "reloading"  // every node committed (journals of earlier versions): finish like committing
)

const (
	journalName     = "apply-journal.json"
	lastJournalFile = "last-apply.json"
)

// journal is the admin-side record of an apply, written atomically (and
// fsynced) before every phase change and after every node's progress, so
// that a re-run after a crash knows whether to roll back or forward. It
// holds paths and hashes, never file contents.
type journal struct {
	Version   int            `json:"version"`
	RunID     string         `json:"run_id"`
	AdminHost string         `json:"admin_host"`
	PID       int            `json:"pid"`
	Started   time.Time      `json:"started"`
	Phase     string         `json:"phase"`
	Nodes     []*journalNode `json:"nodes"`

	mu   sync.Mutex
	path string
}

// journalNode is one node's part of an apply.
type journalNode struct {
	Node               string        `json:"node"`
	Server             bool          `json:"server"`
	Generation         string        `json:"generation"`
	PreviousGeneration string        `json:"previous_generation,omitempty"`
	StateDir           string        `json:"state_dir"`
	Stage              string        `json:"stage"`                // staging directory name beside each target
	UploadDir          string        `json:"upload_dir,omitempty"` // sudo: where files are uploaded first
	CreatedDirs        []string      `json:"created_dirs,omitempty"`
	Files              []journalFile `json:"files"` // commit order: the generation file last
	ContentChanged     bool          `json:"content_changed"`
	Restart            bool          `json:"restart"`
	Staged             bool          `json:"staged"`
	Committed          bool          `json:"committed"`
	Reloaded           bool          `json:"reloaded"`
	// Mesh is the node's mesh work after the commit (nil: none); MeshDone
	// is set once it succeeded.
	Mesh     *meshStep `json:"mesh,omitempty"`
	MeshDone bool      `json:"mesh_done,omitempty"`
	Error    string    `json:"error,omitempty"`
}

type journalFile struct {
	Path   string `json:"path"`
	Staged string `json:"staged"`
	SHA256 string `json:"sha256"`
	Mode   uint32 `json:"mode"`
	Owner  string `json:"owner,omitempty"`
	Group  string `json:"group,omitempty"`
}

func (journalFile) upload(i int) string { return fmt.Sprintf("f%d", i) }

// targetDirs are the distinct directories of the node's files.
func (j *journalNode) targetDirs() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range j.Files {
		d := path.Dir(f.Path)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// deleteDirs are the directories of the files the mesh step deletes that
// are not target directories (sorted, once each).
func (j *journalNode) deleteDirs() []string {
	if j.Mesh == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, d := range j.targetDirs() {
		seen[d] = true
	}
	var out []string
	for _, p := range j.Mesh.Deletes {
		if d := path.Dir(p); !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

func (j *journal) node(name string) *journalNode {
	for _, n := range j.Nodes {
		if n.Node == name {
			return n
		}
	}
	return nil
}

// update applies fn under the journal's lock and persists the result.
func (j *journal) update(fn func()) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if fn != nil {
		fn()
	}
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(j.path), 0o700); err != nil {
		return fmt.Errorf("apply journal: %w", err)
	}
	if err := atomicfile.WriteFile(j.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("apply journal %s: %w", j.path, err)
	}
	return nil
}

// finish retires the journal: the apply is complete (or fully rolled back).
func (j *journal) finish() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	last := filepath.Join(filepath.Dir(j.path), lastJournalFile)
	if err := os.Rename(j.path, last); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("apply journal: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(j.path))
}

func loadJournal(dir string) (*journal, error) {
	p := filepath.Join(dir, journalName)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("apply journal: %w", err)
	}
	j := &journal{path: p}
	if err := json.Unmarshal(data, j); err != nil {
		return nil, fmt.Errorf("apply journal %s is corrupt (%v): inspect it, clean the nodes' staging by hand, then remove it", p, err)
	}
	if err := j.check(); err != nil {
		return nil, fmt.Errorf("apply journal %s is corrupt (%w): inspect it, clean the nodes' staging by hand, then remove it", p, err)
	}
	return j, nil
}

// check refuses a journal that apply could not have written. Recovery turns
// its paths into `rm -rf` on the nodes, so a hand-edited or damaged journal
// (an empty stage name, an upload dir of "/", a null node) must stop here,
// not reach a node or panic.
func (j *journal) check() error {
	if j.RunID == "" || strings.Trim(j.RunID, "0123456789abcdefABCDEF-_") != "" {
		return fmt.Errorf("run_id %q is not a run id", j.RunID)
	}
	seen := map[string]bool{}
	for i, n := range j.Nodes {
		if n == nil || n.Node == "" {
			return fmt.Errorf("nodes[%d] has no node name", i)
		}
		if seen[n.Node] {
			return fmt.Errorf("node %q is listed twice", n.Node)
		}
		seen[n.Node] = true
		if want := stagePrefix + j.RunID; n.Stage != want {
			return fmt.Errorf("node %s: stage %q, want %q", n.Node, n.Stage, want)
		}
		if !cleanAbs(n.StateDir) {
			return fmt.Errorf("node %s: state_dir %q is not a clean absolute path", n.Node, n.StateDir)
		}
		if n.UploadDir != "" && (!cleanAbs(n.UploadDir) || path.Base(n.UploadDir) != uploadPrefix+j.RunID) {
			return fmt.Errorf("node %s: upload_dir %q is not <home>/%s", n.Node, n.UploadDir, uploadPrefix+j.RunID)
		}
		for _, d := range n.CreatedDirs {
			if !cleanAbs(d) {
				return fmt.Errorf("node %s: created_dirs entry %q is not a clean absolute path", n.Node, d)
			}
		}
		for _, f := range n.Files {
			if !cleanAbs(f.Path) || f.Path == "/" {
				return fmt.Errorf("node %s: file path %q is not a clean absolute path", n.Node, f.Path)
			}
			if want := path.Join(path.Dir(f.Path), n.Stage, path.Base(f.Path)); f.Staged != want {
				return fmt.Errorf("node %s: %s is staged as %q, want %q", n.Node, f.Path, f.Staged, want)
			}
		}
	}
	return nil
}

func cleanAbs(p string) bool { return path.IsAbs(p) && path.Clean(p) == p }
