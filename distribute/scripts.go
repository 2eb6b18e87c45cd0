package distribute

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Every remote step is one of these scripts, sent to `sh -s` on stdin. They
// are POSIX sh, use only coreutils (sha256sum, stat -c, mkdir, mv, cp, sync),
// prefix every node path with $R (MTLSCTL_ROOT: empty on a real node) and
// print nothing secret: file contents never leave the node through them,
// and the gossip key is hashed on the node with the shell's builtin printf
// (so it is never in any process's argv).

const scriptHeader = "set -u\nR=\"${MTLSCTL_ROOT:-}\"\numask 077\n"

// Names of mtlsctl's files inside the node state directory.
const (
	genFile       = "generation"
	manifestJSON  = "manifest.json"
	manifestSums  = "manifest.sha256"
	lockDir       = "lock"
	backupDir     = "backup"
	stagePrefix   = ".mtlsctl-stage-"
	uploadPrefix  = ".mtlsctl-upload-"
	exitLocked    = 3
	markerLocked  = "LOCKED"
	markerCreated = "CREATED"
)

// q quotes s for the shell.
func q(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// inspectScript reads, without changing anything, the state of paths and of
// the node state directory (generation, manifest and the files it lists,
// lock). It prints F/X/N<TAB>path for each path (a regular file, something
// else, missing), then for the regular files, in the same order, their
// sha256 (after SUMS) and "mode owner group" (after STAT), using one
// sha256sum and one stat for all files. With gossip, JSON files holding
// "encrypt" also get E<TAB>path<TAB>sha256 of the key, hashed on the node.
func inspectScript(paths []string, stateDir string, gossip bool) string {
	var b strings.Builder
	b.WriteString(scriptHeader)
	b.WriteString("set --\n")
	const one = `if [ -f "$R$p" ]; then printf 'F\t%s\n' "$p"; set -- "$@" "$R$p"; elif [ -e "$R$p" ]; then printf 'X\t%s\n' "$p"; else printf 'N\t%s\n' "$p"; fi` + "\n"
	for _, p := range paths {
		b.WriteString("p=" + q(p) + "\n" + one)
	}
	fmt.Fprintf(&b, "S=\"$R\"%s\n", q(stateDir))
	// The generation (one line) and the manifest (JSON, newlines dropped)
	// are read with the shell's own read: no process per file.
	b.WriteString(`if [ -f "$S/` + genFile + `" ]; then g=; { read -r g < "$S/` + genFile + `"; } 2>/dev/null; printf 'G\t%s\n' "$g"; fi
if [ -f "$S/` + manifestJSON + `" ]; then j=; while IFS= read -r l || [ -n "$l" ]; do j="$j$l"; l=; done < "$S/` + manifestJSON + `"; printf 'J\t%s\n' "$j"; fi
if [ -f "$S/` + manifestSums + `" ]; then
  while read -r sum p; do if [ -n "$p" ]; then ` + strings.TrimSuffix(one, "\n") + `; fi; done < "$S/` + manifestSums + `"
fi
if [ -d "$S/` + lockDir + `" ]; then printf 'L\t%s\t%s\n' "$(cat "$S/` + lockDir + `/run" 2>/dev/null)" "$(tr '\n' ' ' < "$S/` + lockDir + `/info" 2>/dev/null)"; fi
if [ $# -gt 0 ]; then
  printf 'SUMS\n'
  if out=$(sha256sum -- "$@" 2>/dev/null); then printf '%s\n' "$out"; else
    for f in "$@"; do if s=$(sha256sum < "$f" 2>/dev/null); then printf '%s\n' "${s%% *}"; else printf -- '-\n'; fi; done
  fi
  printf 'STAT\n'
  if out=$(stat -L -c '%a %U %G' -- "$@" 2>/dev/null); then printf '%s\n' "$out"; else
    for f in "$@"; do stat -L -c '%a %U %G' -- "$f" 2>/dev/null || printf '? ? ?\n'; done
  fi
  printf 'END\n'
fi
`)
	if gossip {
		b.WriteString(`for f in "$@"; do case "$f" in *.json)
  e=$(sed -n 's/.*"encrypt"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$f" 2>/dev/null | head -n 1)
  if [ -n "$e" ]; then
    # Same as fingerprint.Gossip: the hash of the decoded key bytes, or of
    # the text when it is not base64.
    if printf '%s' "$e" | base64 -d >/dev/null 2>&1; then h=$(printf '%s' "$e" | base64 -d | sha256sum | cut -c1-64)
    else h=$(printf '%s' "$e" | sha256sum | cut -c1-64); fi
    printf 'E\t%s\t%s\n' "${f#"$R"}" "$h"
  fi
  e="";;
esac; done
`)
	}
	b.WriteString("exit 0\n")
	return b.String()
}

// lockHeld is a shell test (one compound command) that the lock is held
// by runID. It reads the lock's run file with the shell's read: no process.
func lockHeld(runID string) string {
	return fmt.Sprintf(`{ _l=; { read -r _l < "$S/%s/run"; } 2>/dev/null; [ "$_l" = %s ]; }`, lockDir, q(runID))
}

// prepareScript takes the node lock (or finds it already ours), creates
// missing target directories and an empty 0700 staging directory beside
// each target. It prints CREATED<TAB>dir for directories it made, or
// LOCKED<TAB>run<TAB>info and exits 3 when another run holds the lock.
func prepareScript(j *journalNode, runID, lockInfo string, force bool) string {
	var b strings.Builder
	b.WriteString(scriptHeader)
	fmt.Fprintf(&b, "S=\"$R\"%s\n", q(j.StateDir))
	b.WriteString(`{ [ -d "$S" ] || mkdir -p "$S"; } && chmod 700 "$S" || { echo "cannot create the node state directory $S" >&2; exit 20; }` + "\n")
	if force {
		b.WriteString(`rm -rf "$S/` + lockDir + `"` + "\n")
	}
	fmt.Fprintf(&b, `if mkdir "$S/%[1]s" 2>/dev/null; then
  printf '%%s\n' %[2]s > "$S/%[1]s/info" && printf '%%s\n' %[3]s > "$S/%[1]s/run" || { echo "cannot write the lock" >&2; exit 21; }
elif ! %[4]s; then
  printf '%[5]s\t%%s\t%%s\n' "$(cat "$S/%[1]s/run" 2>/dev/null)" "$(tr '\n' ' ' < "$S/%[1]s/info" 2>/dev/null)"
  exit %[6]d
fi
`, lockDir, q(lockInfo), q(runID), lockHeld(runID), markerLocked, exitLocked)
	// Missing target directories are made with one mkdir and one chmod,
	// the staging directories with one mkdir: process count, not directory
	// count, is what costs on a busy node. A failure is retried per
	// directory to name the one at fault.
	b.WriteString("set --\n")
	for _, d := range j.targetDirs() {
		fmt.Fprintf(&b, `if [ ! -d %[1]s ]; then set -- "$@" %[1]s; printf '%[2]s\t%%s\n' %[3]s; fi
`, rq(d), markerCreated, q(d))
	}
	b.WriteString(`if [ $# -gt 0 ]; then
  mkdir -p -- "$@" 2>/dev/null || for d in "$@"; do mkdir -p -- "$d" || { echo "cannot create ${d#"$R"}" >&2; exit 22; }; done
  chmod 755 -- "$@"
fi
set --
`)
	for _, d := range j.targetDirs() {
		st := rq(path.Join(d, j.Stage))
		fmt.Fprintf(&b, "if [ -e %[1]s ] || [ -L %[1]s ]; then rm -rf -- %[1]s; fi\nset -- \"$@\" %[1]s\n", st)
	}
	b.WriteString(`mkdir -m 700 -- "$@" 2>/dev/null || for d in "$@"; do
  [ -d "$d" ] || mkdir -m 700 -- "$d" || { echo "cannot create the staging directory in $(dirname -- "${d#"$R"}")" >&2; exit 23; }
done
exit 0
`)
	return b.String()
}

// verifyOpts says what verifyScript does besides hashing.
type verifyOpts struct {
	configDir, runID string
	// validate lists the staged Consul config files to `consul validate`.
	validate []journalFile
	// uploaded is what the SFTP upload already did (modes, fsync).
	uploaded uploadDone
}

// verifyScript finishes staging after the upload: with sudo it copies the
// uploads from the user's home into the staging directories; it sets modes
// (unless the upload did) and owners, syncs (unless the upload did), and
// prints HASHES then the sha256 of every staged file. When o.validate lists
// staged Consul config files it then runs the `consul validate` check
// (writeValidate) in the same session.
func verifyScript(j *journalNode, o verifyOpts) string {
	var b strings.Builder
	b.WriteString(scriptHeader)
	var staged []string
	byMode := map[string][]string{}
	byOwner := map[string][]string{}
	for i, f := range j.Files {
		if j.UploadDir != "" {
			fmt.Fprintf(&b, "cp %s %s || { echo %s >&2; exit 30; }\n",
				rq(path.Join(j.UploadDir, f.upload(i))), rq(f.Staged), q("cannot copy the upload of "+f.Path+" into staging"))
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
	// One chmod per mode and one chown per owner: process count, not file
	// count, is what costs on a busy node.
	for _, m := range sortedKeys(byMode) {
		fmt.Fprintf(&b, "chmod %s --%s || exit 31\n", m, rqList(byMode[m]))
	}
	for _, own := range sortedKeys(byOwner) {
		fmt.Fprintf(&b, "chown %s --%s || { echo %s >&2; exit 32; }\n", q(own), rqList(byOwner[own]),
			q("cannot chown files to "+own+" (files with an owner need root: set ssh.user root or ssh.sudo)"))
	}
	if !o.uploaded.synced {
		b.WriteString(syncCmd(staged))
	}
	fmt.Fprintf(&b, "printf '%s\\n'\nsha256sum --%s || exit 33\n", markerHashes, rqList(staged))
	if j.UploadDir != "" {
		fmt.Fprintf(&b, "rm -rf %s\n", rq(j.UploadDir))
	}
	if len(o.validate) > 0 {
		writeValidate(&b, j, o.configDir, o.runID, o.validate)
		return b.String()
	}
	b.WriteString("exit 0\n")
	return b.String()
}

// markerHashes precedes sha256sum's output (one line per staged file, in order).
const markerHashes = "HASHES"

// rqList is " " + rq(p) for each path.
func rqList(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(" " + rq(p))
	}
	return b.String()
}

// parseHashes reads verifyScript's output: the sha256 of each staged file, in order.
func parseHashes(out string) []string {
	_, after, ok := strings.Cut(out, markerHashes+"\n")
	if !ok {
		return nil
	}
	var sums []string
	for _, line := range strings.Split(after, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			sums = append(sums, strings.TrimPrefix(f[0], "\\"))
		}
	}
	return sums
}

// rq quotes a node path with the $R prefix.
func rq(p string) string { return `"$R"` + q(p) }

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

// commitScript checks that every staged file (or, on a re-run, the target
// it was already renamed onto) holds the new content, then backs up each
// target and renames the staged file onto it (the generation file last),
// syncs and removes the staging directories. It prints COMMITTED when the
// files are in place, then, when reload is set, runs reloadScript's work
// in the same session: the reload or restart command (when not empty) and
// the release of the lock. Running it twice is harmless.
func commitScript(j *journalNode, runID string, reload *reloadStep) string {
	var b strings.Builder
	b.WriteString(scriptHeader)
	fmt.Fprintf(&b, "S=\"$R\"%s\n", q(j.StateDir))
	prev := j.PreviousGeneration
	if prev == "" {
		prev = "initial"
	}
	fmt.Fprintf(&b, "B=\"$S/%s/\"%s\n", backupDir, q(prev))
	fmt.Fprintf(&b, "%s || { echo 'the node lock is not held by this apply (run %s); another admin may have forced it' >&2; exit %d; }\n",
		lockHeld(runID), runID, exitLocked)
	b.WriteString(`check() {
  if [ -f "$R$1" ]; then
    s=$(sha256sum < "$R$1") && s=${s%% *} || s=""
    [ "$s" = "$3" ] || { echo "staged copy of $2 has sha256 $s, want $3" >&2; exit 40; }
  else
    s=$(sha256sum < "$R$2" 2>/dev/null) && s=${s%% *} || s=""
    [ "$s" = "$3" ] || { echo "staged copy of $2 is gone and $2 does not hold the new content" >&2; exit 41; }
  fi
}
commit() {
  [ -f "$R$1" ] || return 0
  mv -f "$R$1" "$R$2" || { echo "cannot rename the staged file onto $2" >&2; exit 43; }
}
`)
	// Fast path: every staged file still there with the right hash (one
	// process); otherwise (a re-run after a partial commit) check per file.
	b.WriteString("fast=1\nif ! printf '%s  %s\\n'")
	for _, f := range j.Files {
		fmt.Fprintf(&b, " %s %s", q(f.SHA256), rq(f.Staged))
	}
	b.WriteString(" | sha256sum -c --status 2>/dev/null; then\n  fast=0\n")
	for _, f := range j.Files {
		fmt.Fprintf(&b, "  check %s %s %s\n", q(f.Staged), q(f.Path), q(f.SHA256))
	}
	b.WriteString("fi\n")
	// Back up the current targets, one cp per directory, all before any
	// rename; the marker makes a re-run skip it (targets may be new by then).
	fmt.Fprintf(&b, "if [ ! -e \"$B/.complete-%s\" ]; then\n", runID)
	byDir := map[string][]string{}
	for _, f := range j.Files {
		byDir[path.Dir(f.Path)] = append(byDir[path.Dir(f.Path)], f.Path)
	}
	dirs := sortedKeys(byDir)
	b.WriteString("  set --")
	for _, d := range dirs {
		fmt.Fprintf(&b, " \"$B\"%s", q(d))
	}
	b.WriteString("\n  mkdir -p -- \"$@\" || exit 42\n")
	for _, d := range dirs {
		b.WriteString("  set --\n")
		for _, p := range byDir[d] {
			fmt.Fprintf(&b, "  if [ -f %s ]; then set -- \"$@\" %s; fi\n", rq(p), rq(p))
		}
		fmt.Fprintf(&b, "  if [ $# -gt 0 ]; then cp -p -- \"$@\" \"$B\"%s || { echo %s >&2; exit 42; }; fi\n",
			q(d+"/"), q("cannot back up the files of "+d))
	}
	fmt.Fprintf(&b, "  : > \"$B/.complete-%s\" || exit 42\nfi\n", runID)
	// Fast path: one mv per directory (a staged file has its target's base
	// name), the directory holding the generation file last and the
	// generation file last in it. A re-run renames file by file.
	b.WriteString("if [ \"$fast\" = 1 ]; then\n")
	for _, g := range commitGroups(j) {
		b.WriteString("  mv -f --")
		for _, f := range g {
			b.WriteString(" " + rq(f.Staged))
		}
		fmt.Fprintf(&b, " %s || { echo %s >&2; exit 43; }\n", rq(path.Dir(g[0].Path)+"/"), q("cannot rename the staged files into "+path.Dir(g[0].Path)))
	}
	b.WriteString("else\n")
	for _, f := range j.Files {
		fmt.Fprintf(&b, "  commit %s %s\n", q(f.Staged), q(f.Path))
	}
	b.WriteString("fi\n")
	b.WriteString(syncCmd(j.targetDirs()))
	b.WriteString("rm -rf --")
	for _, d := range j.targetDirs() {
		b.WriteString(" " + rq(path.Join(d, j.Stage)))
	}
	fmt.Fprintf(&b, "\nprintf '%s\\n'\n", markerCommitted)
	if reload == nil {
		b.WriteString("exit 0\n")
		return b.String()
	}
	writeReload(&b, reload.command, runID)
	return b.String()
}

// markerCommitted is printed by commitScript once the files are in place.
const markerCommitted = "COMMITTED"

// reloadStep is the reload part of a combined commit and reload.
type reloadStep struct {
	command string // "" when only the lock is to be released
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

// cleanupScript removes everything staging made (staging and upload
// directories, target directories it created if still empty) and releases
// the lock if this run holds it. It never touches a target file.
func cleanupScript(j *journalNode, runID string) string {
	var b strings.Builder
	b.WriteString(scriptHeader)
	fmt.Fprintf(&b, "S=\"$R\"%s\n", q(j.StateDir))
	for _, d := range j.targetDirs() {
		fmt.Fprintf(&b, "rm -rf %s\n", rq(path.Join(d, j.Stage)))
	}
	if j.UploadDir != "" {
		fmt.Fprintf(&b, "rm -rf %s\n", rq(j.UploadDir))
	}
	fmt.Fprintf(&b, "rm -rf \"$S/%s\"\n", validatePrefix+runID)
	for i := len(j.CreatedDirs) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "rmdir %s 2>/dev/null\n", rq(j.CreatedDirs[i]))
	}
	fmt.Fprintf(&b, "if %s; then rm -rf \"$S/%s\"; fi\nexit 0\n", lockHeld(runID), lockDir)
	return b.String()
}

// reloadScript runs the reload or restart command, then releases the lock
// if this run holds it (also when the command failed: the files are
// committed; the journal retries the reload).
func reloadScript(command, stateDir, runID string) string {
	var b strings.Builder
	b.WriteString(scriptHeader)
	fmt.Fprintf(&b, "S=\"$R\"%s\n", q(stateDir))
	writeReload(&b, command, runID)
	return b.String()
}

// writeReload appends reloadScript's work to a script that has set S; it
// ends the script with the command's exit status.
func writeReload(b *strings.Builder, command, runID string) {
	b.WriteString("rc=0\n")
	if strings.TrimSpace(command) != "" {
		fmt.Fprintf(b, "sh -c %s </dev/null || rc=$?\n", q(command))
	}
	fmt.Fprintf(b, "if %s; then rm -rf \"$S/%s\"; fi\nexit $rc\n", lockHeld(runID), lockDir)
}

// syncCmd flushes the given node paths (files, or directories after
// renames) to disk: `sync FILE...` (coreutils 8.24+) fsyncs just those;
// older or busybox sync falls back to flushing everything.
func syncCmd(paths []string) string {
	var b strings.Builder
	b.WriteString("sync --")
	for _, p := range paths {
		b.WriteString(" " + rq(p))
	}
	b.WriteString(" 2>/dev/null || sync\n")
	return b.String()
}
