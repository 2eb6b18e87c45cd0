package distribute

import (
	"context"
	"errors"
	"fmt"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"path"
	"regexp"
	"strings"
)

// ErrConsulValidate: `consul validate` on the node rejected the staged
// configuration; nothing was committed anywhere.
var ErrConsulValidate = errors.New("consul validate rejected the staged configuration")

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

// validateError turns the verify step's EX_INVALID exit into
// ErrConsulValidate (nil for any other error).
func (s *Session) validateError(err error, runID string) error {
	se, ok := asScriptError(err)
	if !ok || se.Code != exitStatus("EX_INVALID") {
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
func (s *Session) spaceHint(ctx context.Context, c *transport.Conn, jn *journalNode, contents [][]byte) string {
	if c.Broken() {
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
	out, err := c.Run(ctx, "diagnose", diskFreeScript(dirs))
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

// asScriptError finds a node step's non-zero exit in err.
func asScriptError(err error) (*transport.ScriptError, bool) {
	var se *transport.ScriptError
	ok := errors.As(err, &se)
	return se, ok
}
