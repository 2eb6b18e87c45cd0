package distribute

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// ErrConsulValidate: `consul validate` on the node rejected the staged
// configuration; nothing was committed anywhere.
var ErrConsulValidate = errors.New("consul validate rejected the staged configuration")

// Markers printed by validateScript on stdout.
const (
	markerNoConsul = "NOCONSUL"
	markerValid    = "VALID"
	validatePrefix = ".mtlsctl-validate-"
	exitInvalid    = 51
)

// validateConfigFiles are the node's staged files that Consul loads from
// configDir: *.json and *.hcl directly inside it (the agent does not read
// subdirectories). The node state files are never among them.
func validateConfigFiles(jn *journalNode, configDir string) []journalFile {
	var out []journalFile
	for _, f := range jn.Files {
		if path.Dir(f.Path) != path.Clean(configDir) || reservedStatePath(f.Path, jn.StateDir) {
			continue
		}
		if ext := path.Ext(f.Path); ext == ".json" || ext == ".hcl" {
			out = append(out, f)
		}
	}
	return out
}

// writeValidate appends to a script the check of the configuration the
// node would load after the commit, when the node has a consul binary on
// PATH: it copies the current *.json and *.hcl of configDir into a private
// directory under the node state dir, copies the staged config files over
// them and runs `consul validate` on that directory. It prints NOCONSUL when
// there is no consul binary (nothing checked), VALID when consul accepted
// the directory, and otherwise exits 51 with consul's output on stderr. It
// changes nothing outside the node state dir and removes its directory in
// every case. It ends the script (exit 0 when there is nothing to reject).
func writeValidate(b *strings.Builder, jn *journalNode, configDir, runID string, files []journalFile) {
	fmt.Fprintf(b, "S=\"$R\"%s\n", q(jn.StateDir))
	fmt.Fprintf(b, "command -v consul >/dev/null 2>&1 || { printf '%s\\n'; exit 0; }\n", markerNoConsul)
	fmt.Fprintf(b, "V=\"$S/%s\"\n", validatePrefix+runID)
	b.WriteString(`rm -rf "$V" && mkdir -m 700 -p "$V" || { echo "cannot create $V" >&2; exit 50; }` + "\n")
	// One cp for the current files, one for the staged ones (they go in
	// last, so they replace their current versions).
	fmt.Fprintf(b, "set --\nfor f in \"$R\"%[1]s/*.json \"$R\"%[1]s/*.hcl; do if [ -f \"$f\" ]; then set -- \"$@\" \"$f\"; fi; done\n", q(path.Clean(configDir)))
	b.WriteString(`if [ $# -gt 0 ]; then cp -p -- "$@" "$V/" || { rm -rf "$V"; echo "cannot copy the current configuration for validation" >&2; exit 50; }; fi
`)
	// Staged files keep their target's base name in their staging
	// directory, so one cp into $V puts each where it belongs.
	b.WriteString("cp -p --")
	for _, f := range files {
		b.WriteString(" " + rq(f.Staged))
	}
	fmt.Fprintf(b, " \"$V/\" || { rm -rf \"$V\"; echo %s >&2; exit 50; }\n", q("cannot copy the staged configuration for validation"))
	// Consul's own output names the file and the problem; it does not echo
	// configuration values such as the gossip key.
	b.WriteString(`out=$(consul validate "$V" 2>&1); rc=$?
rm -rf "$V"
if [ "$rc" -ne 0 ]; then printf '%s\n' "$out" >&2; exit ` + fmt.Sprint(exitInvalid) + `; fi
printf '` + markerValid + `\n'
exit 0
`)
}

// validateError turns the verify script's exit 51 into ErrConsulValidate
// (nil for any other error).
func (s *session) validateError(err error, runID string) error {
	var se *scriptError
	if !errors.As(err, &se) || se.Code != exitInvalid {
		return nil
	}
	// Consul names files by the temporary directory's path; show where
	// they really are.
	tmp := regexp.MustCompile(`[^\s"':]*/` + regexp.QuoteMeta(validatePrefix+runID))
	msg := tmp.ReplaceAllLiteralString(strings.TrimSpace(se.Stderr), path.Clean(s.topo.Cluster.Consul.ConfigDir))
	return fmt.Errorf("%w (%s with the staged files): %s", ErrConsulValidate, s.topo.Cluster.Consul.ConfigDir, msg)
}

// spaceHint explains a failed upload when a file system the staged files
// go to has too little room left (sftp-server reports ENOSPC as a bare
// "Failure"). It returns "" when space is not the problem or the node
// cannot be asked.
func (s *session) spaceHint(ctx context.Context, c *nodeConn, jn *journalNode, contents [][]byte) string {
	if c.broken() {
		return ""
	}
	need := map[string]int64{}
	for i, f := range jn.Files {
		d := path.Dir(f.Path)
		if jn.UploadDir != "" {
			d = jn.UploadDir
		}
		// Each file takes at least one 4 KiB block.
		need[d] += (int64(len(contents[i]))/4096 + 1) * 4096
	}
	dirs := sortedKeys(need)
	var b strings.Builder
	b.WriteString(scriptHeader)
	for _, d := range dirs {
		fmt.Fprintf(&b, "printf '%%s\\n' \"$(df -Pk %s 2>/dev/null | awk 'NR==2 {print $4}')\"\n", rq(d))
	}
	out, err := c.run(ctx, "diagnose", b.String())
	if err != nil {
		return ""
	}
	var full []string
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var freeKiB int64
		if i >= len(dirs) || line == "" {
			break
		}
		if _, err := fmt.Sscan(line, &freeKiB); err != nil {
			continue
		}
		if freeKiB*1024 < need[dirs[i]] {
			full = append(full, fmt.Sprintf("%s has %d KiB free, the staged files need about %d KiB", dirs[i], freeKiB, (need[dirs[i]]+1023)/1024))
		}
	}
	if len(full) == 0 {
		return ""
	}
	return "no space left on the node: " + strings.Join(full, "; ")
}
