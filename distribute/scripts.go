package distribute

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// The node steps are POSIX sh files in scripts/, embedded. Each step is
// sent to the node's remote shell as: a preamble that sets the step's
// variables (every value quoted by transport.Quote, the one quoting
// function) and the EX_* exit codes, then scripts/lib.sh, then the step's
// file. The files use only coreutils (sha256sum, stat -c, mkdir, mv, cp,
// sync), prefix every node path with $R (MTLSCTL_ROOT: empty on a real
// node) and print nothing secret: file contents never leave the node
// through them, and the gossip key is hashed on the node.
//
//go:embed scripts/*.sh
var scriptFS embed.FS

// Names of mtlsctl's entries inside the node state directory (the step
// files spell the same names).
const (
	genFile      = "generation"
	manifestJSON = "manifest.json"
	manifestSums = "manifest.sha256"
	lockDir      = "lock"
	backupDir    = "backup"
	stagePrefix  = ".mtlsctl-stage-"
	uploadPrefix = ".mtlsctl-upload-"
)

// maxStateBytes is the most the inspect step reads of a node state file
// (generation, manifest) or scans of an agent config for the gossip key; a
// larger one is reported and taken as absent. mtlsctl's own are far smaller.
const maxStateBytes = 1 << 20

// exitCode is a named exit status of a node step.
type exitCode struct {
	name string
	code int
	what string
}

// exitCodes is the one table of the steps' exit statuses: the preamble
// defines each as a shell variable, and the Go side matches them by name.
var exitCodes = []exitCode{
	{"EX_LOCKED", 3, "another run holds the node lock"},
	{"EX_STATEDIR", 20, "cannot create the node state directory"},
	{"EX_LOCKWRITE", 21, "cannot write the node lock"},
	{"EX_MKDIR", 22, "cannot create a target directory"},
	{"EX_STAGEDIR", 23, "cannot create a staging directory"},
	{"EX_UNSAFE_DIR", 24, "a user other than root could swap entries in a target directory"},
	{"EX_COPY", 30, "cannot copy an upload into staging"},
	{"EX_CHMOD", 31, "cannot set a staged file's mode"},
	{"EX_CHOWN", 32, "cannot set a staged file's owner"},
	{"EX_HASH", 33, "cannot hash the staged files"},
	{"EX_STAGED_HASH", 40, "a staged file changed"},
	{"EX_STAGED_GONE", 41, "a staged file is gone"},
	{"EX_BACKUP", 42, "cannot back up the current files"},
	{"EX_RENAME", 43, "cannot rename a staged file into place"},
	{"EX_VALIDATE_SETUP", 50, "cannot prepare the consul validate directory"},
	{"EX_INVALID", 51, "consul validate rejected the configuration"},
	{"EX_MESH", 60, "a mesh step failed (units, firewall)"},
}

// exitStatus returns the code of the named exit status.
func exitStatus(name string) int {
	for _, e := range exitCodes {
		if e.name == name {
			return e.code
		}
	}
	panic("distribute: no exit code " + name)
}

// Markers the steps print on stdout.
const (
	markerLocked    = "LOCKED"
	markerCreated   = "CREATED"
	markerHashes    = "HASHES"
	markerCommitted = "COMMITTED"
	markerStarted   = "STARTED"
	markerNoConsul  = "NOCONSUL"
	markerValid     = "VALID"
	validatePrefix  = ".mtlsctl-validate-"
)

// vars are a step's variables, in order.
type vars []string

func (v *vars) set(name, value string) { *v = append(*v, name, value) }

// lines joins items as a newline-separated list variable.
func lines(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return strings.Join(items, "\n") + "\n"
}

// row joins fields with tabs (one line of a list variable).
func row(fields ...string) string { return strings.Join(fields, "\t") }

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// stepScript is the text of the step file name with its variables.
func stepScript(name string, v vars) string {
	lib, err := scriptFS.ReadFile("scripts/lib.sh")
	if err != nil {
		panic(err)
	}
	body, err := scriptFS.ReadFile("scripts/" + name + ".sh")
	if err != nil {
		panic("distribute: no step " + name)
	}
	var b strings.Builder
	b.WriteString("# mtlsctl step " + name + "\n")
	for _, e := range exitCodes {
		fmt.Fprintf(&b, "%s=%d\n", e.name, e.code)
	}
	for i := 0; i+1 < len(v); i += 2 {
		b.WriteString(v[i] + "=" + transport.Quote(v[i+1]) + "\n")
	}
	b.Write(lib)
	b.Write(body)
	return b.String()
}

// inspectScript reads, without changing anything, the state of paths and
// of the node state directory (scripts/inspect.sh).
func inspectScript(paths []string, stateDir string, gossip bool) string {
	return inspectMeshScript(paths, stateDir, gossip, nil, false)
}

// inspectMeshScript is inspectScript that also reports the activity of
// units and, with firewall, whether mtlsctl's chains are hooked in.
func inspectMeshScript(paths []string, stateDir string, gossip bool, units []string, firewall bool) string {
	var v vars
	v.set("S", stateDir)
	v.set("RUN", "")
	v.set("PATHS", lines(paths))
	v.set("GOSSIP", bit(gossip))
	v.set("MAXSTATE", strconv.Itoa(maxStateBytes))
	v.set("UNITS", lines(units))
	fwIn, fwNat := "", ""
	if firewall {
		fwIn, fwNat = consulcfg.FirewallChain, consulcfg.EgressChain
	}
	v.set("FWIN", fwIn)
	v.set("FWNAT", fwNat)
	return stepScript("inspect", v)
}

// prepareScript refuses target directories, the directories of files the
// mesh step deletes and the node state directory when a user other than
// root could swap entries in them, takes the node lock (or finds it
// already ours), creates missing target directories and an empty 0700
// staging directory beside each target (scripts/prepare.sh). With forceRun
// set, a lock that run holds is removed first (the admin side decided it
// may be taken over).
func prepareScript(j *journalNode, runID, lockInfo, forceRun string) string {
	var v vars
	v.set("S", j.StateDir)
	v.set("RUN", runID)
	v.set("LOCKINFO", lockInfo)
	v.set("FORCE_RUN", forceRun)
	v.set("DIRS", lines(j.targetDirs()))
	v.set("CHECK", lines(j.deleteDirs()))
	v.set("STAGE", j.Stage)
	return stepScript("prepare", v)
}

// verifyOpts says what verifyScript does besides hashing.
type verifyOpts struct {
	configDir, runID string
	// validate lists the staged Consul config files to `consul validate`.
	validate []journalFile
	// uploaded is what the SFTP upload already did (modes, fsync).
	uploaded uploadDone
}

// verifyScript finishes staging after the upload (copies with sudo, modes,
// owners, sync), prints the staged files' hashes and, when o.validate
// lists staged Consul config files, runs `consul validate` on the
// configuration the node would load (scripts/verify.sh).
func verifyScript(j *journalNode, o verifyOpts) string {
	var copies, staged, vfiles []string
	byMode := map[string][]string{}
	byOwner := map[string][]string{}
	for i, f := range j.Files {
		if j.UploadDir != "" {
			copies = append(copies, row(path.Join(j.UploadDir, f.upload(i)), f.Staged, f.Path))
		}
		staged = append(staged, f.Staged)
		if !o.uploaded.modes {
			m := fmt.Sprintf("%04o", fs.FileMode(f.Mode).Perm())
			byMode[m] = append(byMode[m], f.Staged)
		}
		if own := ownerSpec(f.Owner, f.Group); own != "" {
			byOwner[own] = append(byOwner[own], f.Staged)
		}
	}
	for _, f := range o.validate {
		vfiles = append(vfiles, f.Staged)
	}
	var v vars
	v.set("S", j.StateDir)
	v.set("RUN", o.runID)
	v.set("UPLOAD", j.UploadDir)
	v.set("COPIES", lines(copies))
	v.set("MODES", lines(groups(byMode)))
	v.set("OWNERS", lines(groups(byOwner)))
	v.set("SYNC", bit(!o.uploaded.synced))
	v.set("STAGED", lines(staged))
	v.set("CONFDIR", path.Clean(o.configDir))
	v.set("VFILES", lines(vfiles))
	return stepScript("verify", v)
}

// groups turns key -> paths into "key<TAB>path..." rows, sorted by key.
func groups(m map[string][]string) []string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, row(append([]string{k}, m[k]...)...))
	}
	return out
}

// parseHashes reads verifyScript's output: the sha256 of each staged file, in order.
func parseHashes(out string) []string {
	_, after, ok := strings.Cut(out, markerHashes+"\n")
	if !ok {
		return nil
	}
	var sums []string
	for _, line := range strings.Split(after, "\n") {
		if line == markerNoConsul || line == markerValid {
			break
		}
		if f := strings.Fields(line); len(f) > 0 {
			sums = append(sums, strings.TrimPrefix(f[0], "\\"))
		}
	}
	return sums
}

func ownerSpec(owner, group string) string {
	switch {
	case owner != "" && group != "":
		return owner + ":" + group
	case owner != "":
		return owner
	case group != "":
		return ":" + group
	}
	return ""
}

// reloadStep is the reload part of a combined commit and reload.
type reloadStep struct {
	command  string // "" when only the lock is to be released
	fallback string // run when the reload fails (a stopped agent): the restart command
}

// commitScript checks the staged files, backs up the targets, renames the
// staged files into place (the generation file last), syncs and removes
// the staging directories, deletes the backups beyond the newest
// keepBackups generations (0: inventory.DefaultBackupsKeep; the one this
// commit made always stays), then,
// when reload is set, reloads or restarts the agent and releases the lock
// (scripts/commit.sh).
func commitScript(j *journalNode, runID string, keepBackups int, reload *reloadStep) string {
	keep := j.Mesh != nil && !j.MeshDone
	prev := j.PreviousGeneration
	if prev == "" {
		prev = "initial"
	}
	var files []string
	byDir := map[string][]string{}
	for _, f := range j.Files {
		files = append(files, row(f.SHA256, f.Staged, f.Path))
		byDir[path.Dir(f.Path)] = append(byDir[path.Dir(f.Path)], f.Path)
	}
	var moves []string
	for _, g := range commitGroups(j) {
		fields := []string{path.Dir(g[0].Path)}
		for _, f := range g {
			fields = append(fields, f.Staged)
		}
		moves = append(moves, row(fields...))
	}
	var v vars
	v.set("S", j.StateDir)
	v.set("RUN", runID)
	v.set("B", path.Join(j.StateDir, backupDir, prev))
	v.set("BACKUP_DIR", backupDir)
	if keepBackups < 1 {
		keepBackups = inventory.DefaultBackupsKeep
	}
	v.set("KEEP_BACKUPS", strconv.Itoa(keepBackups))
	v.set("FILES", lines(files))
	v.set("BACKUPS", lines(groups(byDir)))
	v.set("MOVES", lines(moves))
	v.set("DIRS", lines(j.targetDirs()))
	v.set("STAGE", j.Stage)
	v.set("RELOAD", bit(reload != nil))
	cmd, fallback := "", ""
	if reload != nil {
		cmd, fallback = strings.TrimSpace(reload.command), strings.TrimSpace(reload.fallback)
	}
	v.set("CMD", cmd)
	v.set("FALLBACK", fallback)
	v.set("KEEP", bit(keep))
	return stepScript("commit", v)
}

// commitGroups splits the journal's files (in commit order) by directory,
// keeping the order of first appearance except that the directory of the
// last file (the generation file) goes last, with that file last in it.
func commitGroups(j *journalNode) [][]journalFile {
	if len(j.Files) == 0 {
		return nil
	}
	last := path.Dir(j.Files[len(j.Files)-1].Path)
	idx := map[string]int{}
	var groups [][]journalFile
	for _, f := range j.Files {
		d := path.Dir(f.Path)
		if d == last {
			continue
		}
		i, ok := idx[d]
		if !ok {
			i = len(groups)
			idx[d] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], f)
	}
	var tail []journalFile
	for _, f := range j.Files {
		if path.Dir(f.Path) == last {
			tail = append(tail, f)
		}
	}
	return append(groups, tail)
}

// cleanupScript removes everything staging made and releases the lock if
// this run holds it; it never touches a target file (scripts/cleanup.sh).
func cleanupScript(j *journalNode, runID string) string {
	var created []string
	for i := len(j.CreatedDirs) - 1; i >= 0; i-- {
		created = append(created, j.CreatedDirs[i])
	}
	var v vars
	v.set("S", j.StateDir)
	v.set("RUN", runID)
	v.set("DIRS", lines(j.targetDirs()))
	v.set("STAGE", j.Stage)
	v.set("UPLOAD", j.UploadDir)
	v.set("CREATED", lines(created))
	return stepScript("cleanup", v)
}

// reloadScript runs the reload or restart command (fallback when a reload
// finds the agent stopped), then releases the lock if this run holds it
// (also when the command failed: the files are committed; the journal
// retries the reload) (scripts/reload.sh).
func reloadScript(command, fallback, stateDir, runID string) string {
	return reloadKeepScript(command, fallback, stateDir, runID, false)
}

// reloadKeepScript is reloadScript that, with keep, leaves the lock held
// for the mesh step that follows.
func reloadKeepScript(command, fallback, stateDir, runID string, keep bool) string {
	var v vars
	v.set("S", stateDir)
	v.set("RUN", runID)
	v.set("CMD", strings.TrimSpace(command))
	v.set("FALLBACK", strings.TrimSpace(fallback))
	v.set("KEEP", bit(keep))
	return stepScript("reload", v)
}

// diskFreeScript prints the free KiB of each directory's file system
// (scripts/diskfree.sh).
func diskFreeScript(dirs []string) string {
	var v vars
	v.set("S", "/")
	v.set("RUN", "")
	v.set("DIRS", lines(dirs))
	return stepScript("diskfree", v)
}
