package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/mtlsctl/mtlsctl/internal/umask"
)

// WriteFileAtomic replaces path with data so that, even across a crash, the
// file holds either its old or its new content: it writes a temporary file
// in the same directory, flushes it to disk, sets mode (exactly, whatever
// the umask), renames it over path and flushes the directory. The parent
// directory must exist.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, data, mode, true, umask.Process())
	if err != nil {
		return err
	}
	if err := rename(tmp, path); err != nil {
		unix.Unlink(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeTemp writes data to a new temporary file beside path, with exactly
// mode, and returns its name. The file is created with mode (a private one
// is never more open, even for a moment), and chmod'ed only when the umask
// (-1: unknown) narrowed it. With sync it is flushed to disk before it is
// closed.
func writeTemp(path string, data []byte, mode os.FileMode, sync bool, umask int) (string, error) {
	fd, name, err := createTemp(path, mode)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	err = writeAll(fd, data)
	if err == nil && narrows(umask, mode) {
		err = unix.Fchmod(fd, uint32(mode.Perm()))
	}
	if err == nil && sync {
		err = ignoringEINTR(func() error { return unix.Fsync(fd) })
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		unix.Unlink(name)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return name, nil
}

// rename is os.Rename without its extra lstat of newpath (which only
// matters when renaming a directory).
func rename(oldpath, newpath string) error {
	if err := unix.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// syncDir flushes a directory, so that renames and new entries in it are
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// pendingFile is one file a batch will write.
type pendingFile struct {
	path string
	data []byte
	mode os.FileMode
}

// syncfsThreshold is the batch size from which one filesystem-wide flush
// (syncfs(2)) is used instead of an fsync per file and directory: on the
// ext4 disks we measured, an fsync costs ~1.4 ms, so the 3,000 files of a
// 1,000-node generate would spend seconds in fsync, while one syncfs of the
// same data costs a few hundred ms.
const syncfsThreshold = 32

// writeBatch writes files atomically, each as WriteFileAtomic would, but
// with parallel workers and far fewer flushes: temporary files are written
// in every directory, flushed (one syncfs for a large batch, else an fsync
// each), renamed in the order given within each directory, and the touched
// directories flushed once. Missing parent directories are created 0700.
// root is a directory on the same filesystem (for syncfs).
func writeBatch(root string, files []pendingFile) error {
	if len(files) == 0 {
		return nil
	}
	// Group by directory, keeping the order within each.
	byDir := map[string][]int{}
	var dirs []string
	for i, f := range files {
		d := filepath.Dir(f.path)
		if _, ok := byDir[d]; !ok {
			dirs = append(dirs, d)
		}
		byDir[d] = append(byDir[d], i)
	}
	sort.Strings(dirs)
	umask := umask.Process()
	toSync := map[string]bool{}
	for _, d := range dirs {
		toSync[d] = true
		created, err := mkdirAll(d, umask)
		if err != nil {
			return err
		}
		for _, c := range created {
			toSync[filepath.Dir(c)] = true
		}
	}

	useSyncfs := len(files) >= syncfsThreshold && syncfsSupported
	temps := make([]string, len(files))
	cleanup := func() {
		for _, t := range temps {
			if t != "" {
				unix.Unlink(t)
			}
		}
	}
	// Files are written by one goroutine: a second writer gained ~20 ms on a
	// 1,000-node generate, and the kernel's inode allocation, not our code,
	// dominates the time on ext4 (especially right after a large delete).
	err := each(len(dirs), func(i int) error {
		for _, fi := range byDir[dirs[i]] {
			f := files[fi]
			t, err := writeTemp(f.path, f.data, f.mode, !useSyncfs, umask)
			if err != nil {
				return err
			}
			temps[fi] = t
		}
		return nil
	})
	if err == nil && useSyncfs {
		err = syncFS(root)
	}
	if err != nil {
		cleanup()
		return err
	}
	err = each(len(dirs), func(i int) error {
		for _, fi := range byDir[dirs[i]] {
			if err := rename(temps[fi], files[fi].path); err != nil {
				return fmt.Errorf("write %s: %w", files[fi].path, err)
			}
			temps[fi] = ""
		}
		return nil
	})
	if err != nil {
		cleanup()
		return err
	}
	if useSyncfs {
		return syncFS(root)
	}
	var syncList []string
	for d := range toSync {
		syncList = append(syncList, d)
	}
	return each(len(syncList), func(i int) error { return syncDir(syncList[i]) })
}

// each runs f(0..n-1) in order and stops at the first error.
func each(n int, f func(int) error) error {
	for i := 0; i < n; i++ {
		if err := f(i); err != nil {
			return err
		}
	}
	return nil
}

// mkdirAll creates dir and missing parents with mode 0700 and returns the
// directories it created, outermost first. An existing dir is left as it
// is. umask (-1: unknown) says whether a chmod is needed after mkdir.
func mkdirAll(dir string, umask int) ([]string, error) {
	err := unix.Mkdir(dir, dirMode)
	var created []string
	if err == unix.ENOENT && filepath.Dir(dir) != dir {
		if created, err = mkdirAll(filepath.Dir(dir), umask); err != nil {
			return created, err
		}
		err = unix.Mkdir(dir, dirMode)
	}
	switch {
	case err == unix.EEXIST:
		return created, nil
	case err != nil:
		return created, fmt.Errorf("create directory: %w", &fs.PathError{Op: "mkdir", Path: dir, Err: err})
	}
	if narrows(umask, dirMode) {
		if err := unix.Chmod(dir, dirMode); err != nil {
			return created, fmt.Errorf("create directory: %w", &fs.PathError{Op: "chmod", Path: dir, Err: err})
		}
	}
	return append(created, dir), nil
}

// parallel runs f(0..n-1) on up to GOMAXPROCS workers and returns every
// error, joined, in index order.
func parallel(n int, f func(i int) error) error {
	if n == 0 {
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), n)
	errs := make([]error, n)
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= n {
					return
				}
				errs[j] = f(j)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
