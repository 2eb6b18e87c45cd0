package consulcfg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrBadBundle marks a bundle WriteTree refuses to write (an unsafe node name
// or file path).
var ErrBadBundle = errors.New("bad bundle")

// WriteTree writes every bundle's files to DIR/<node>/<absolute path on the
// node>, with their modes (private keys 0600 whatever the bundle says: the
// tree belongs to the admin, not to the node's consul group). DIR is created
// 0700 if missing; each node's directory is 0700.
//
// Each node's tree is written into a fresh temporary sibling directory and
// renamed into place, replacing the previous one, so a reader sees the old or
// the new tree of a node, never a mix. Only directories WriteTree creates are
// written into, so a symlink planted under DIR is never followed; an old
// DIR/<node> that is a symlink is moved aside and removed as a link.
func WriteTree(dir string, bundles []Bundle) error {
	seen := map[string]bool{}
	for _, b := range bundles {
		if err := checkTreeBundle(b); err != nil {
			return err
		}
		if seen[b.Node] {
			return fmt.Errorf("%w: node %s appears twice", ErrBadBundle, b.Node)
		}
		seen[b.Node] = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("render tree: %w", err)
	}
	for _, b := range bundles {
		if err := writeNodeTree(dir, b); err != nil {
			return &NodeError{Node: b.Node, Err: err}
		}
	}
	return nil
}

func checkTreeBundle(b Bundle) error {
	if b.Node == "" || strings.HasPrefix(b.Node, ".") || strings.ContainsAny(b.Node, "/\\\x00") {
		return fmt.Errorf("%w: node name %q cannot name a directory", ErrBadBundle, b.Node)
	}
	for _, f := range b.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" || strings.ContainsRune(f.Path, 0) {
			return fmt.Errorf("%w: node %s: file path %q must be absolute and clean", ErrBadBundle, b.Node, f.Path)
		}
	}
	return nil
}

func writeNodeTree(dir string, b Bundle) (err error) {
	tmp, err := os.MkdirTemp(dir, "."+b.Node+".new-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, f := range b.Files {
		if err := writeTreeFile(tmp, f); err != nil {
			return err
		}
	}
	final := filepath.Join(dir, b.Node)
	if _, err := os.Lstat(final); errors.Is(err, fs.ErrNotExist) {
		return os.Rename(tmp, final)
	} else if err != nil {
		return err
	}
	// Move the old tree aside (rename does not follow a symlink), put the new
	// one in place, then delete the old one.
	old, err := os.MkdirTemp(dir, "."+b.Node+".old-")
	if err != nil {
		return err
	}
	if err := os.Remove(old); err != nil {
		return err
	}
	if err := os.Rename(final, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Rename(old, final) // put the old tree back
		return err
	}
	return os.RemoveAll(old)
}

func writeTreeFile(root string, f File) error {
	mode := f.Mode.Perm()
	if f.Kind == KindKey {
		mode = 0o600
	}
	target := filepath.Join(root, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	// O_EXCL: the directory is fresh, so an existing entry means two files
	// share a path; it also never follows a link.
	w, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = w.Write(f.Content)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Chmod(target, mode) // the umask narrowed the create mode
}
