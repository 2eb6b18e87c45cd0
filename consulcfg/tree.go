package consulcfg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/mtlsctl/mtlsctl/internal/umask"
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
//
// Nodes are written concurrently. On failure the error is a *NodeError for
// the first failing node in bundle order; the nodes before it are written,
// later ones may be.
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
	umask := umask.Process()
	workers := min(treeWriters, runtime.GOMAXPROCS(0), len(bundles))
	errs := make([]error, len(bundles))
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(bundles) {
					return
				}
				if err := writeNodeTree(dir, bundles[i], umask); err != nil {
					errs[i] = &NodeError{Node: bundles[i].Node, Err: err}
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// treeWriters is how many nodes' trees are written at once. Measured with
// 1,000 nodes (14,000 files and directories) on 2 cores: two writers cut
// the write from 0.39 s to 0.31 s on tmpfs and from ~0.85 s to ~0.71 s on
// ext4; the kernel side of creating inodes does not scale much further.
const treeWriters = 2

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

func writeNodeTree(dir string, b Bundle, umask int) (err error) {
	tmp, err := os.MkdirTemp(dir, "."+b.Node+".new-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := writeFiles(tmp, b.Files, umask); err != nil {
		return err
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

// writeFiles creates files under root, a fresh directory only this process
// writes to, with as few system calls as a tree of thousands of files
// allows: paths are resolved from one descriptor of root, each directory is
// made once, and files are written through raw descriptors (os.File's
// poller registration costs three more calls per file).
func writeFiles(root string, files []File, umask int) error {
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(rfd)
	made := map[string]bool{".": true}
	for _, f := range files {
		rel := f.Path[1:] // clean and absolute: checked by checkTreeBundle
		if err := mkdirs(rfd, root, path.Dir(rel), made); err != nil {
			return err
		}
		mode := uint32(f.Mode.Perm())
		if f.Kind == KindKey {
			mode = 0o600
		}
		if err := createFile(rfd, root, rel, f.Content, mode, umask); err != nil {
			return err
		}
	}
	return nil
}

// mkdirs creates rel and its missing parents (0755 less the umask, as
// os.MkdirAll would) under the directory rfd, skipping those already made.
func mkdirs(rfd int, root, rel string, made map[string]bool) error {
	if made[rel] {
		return nil
	}
	if err := mkdirs(rfd, root, path.Dir(rel), made); err != nil {
		return err
	}
	if err := ignoringEINTR(func() error { return unix.Mkdirat(rfd, rel, 0o755) }); err != nil {
		// EEXIST: a file of the bundle already has this path.
		return &fs.PathError{Op: "mkdir", Path: filepath.Join(root, filepath.FromSlash(rel)), Err: err}
	}
	made[rel] = true
	return nil
}

// createFile writes a new file rel under the directory rfd with exactly
// mode. O_EXCL: the directory is fresh, so an existing entry means two files
// share a path; with O_NOFOLLOW it never follows a link.
func createFile(rfd int, root, rel string, data []byte, mode uint32, umask int) (err error) {
	name := filepath.Join(root, filepath.FromSlash(rel))
	var fd int
	err = ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(rfd, rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		return err
	})
	if err != nil {
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer func() {
		if cerr := unix.Close(fd); cerr != nil && err == nil {
			err = &fs.PathError{Op: "close", Path: name, Err: cerr}
		}
	}()
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "write", Path: name, Err: err}
		}
		data = data[n:]
	}
	// The umask narrowed the create mode (or it is unknown): set it exactly.
	if umask < 0 || mode&^uint32(umask) != mode {
		if err := unix.Fchmod(fd, mode); err != nil {
			return &fs.PathError{Op: "chmod", Path: name, Err: err}
		}
	}
	return nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
