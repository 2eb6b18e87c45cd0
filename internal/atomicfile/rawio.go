package atomicfile

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Files are written through raw descriptors: os.File registers every file
// with the poller (two or three more system calls per file, for files that
// can never block), which shows on the thousands of small files of a large
// state directory.

// tempInfix names temporary files: .<base><tempInfix><random>. They start
// with a dot, so listings that skip hidden entries skip them too.
const tempInfix = ".tmp-"

// narrows reports whether creating with perm under umask (-1: unknown)
// may not give exactly perm, so that a chmod is needed.
func narrows(umask int, perm os.FileMode) bool {
	return umask < 0 || perm.Perm()&os.FileMode(umask) != 0
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

// writeAll writes data to fd, retrying short writes.
func writeAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// createTemp creates a new file for writing beside path, named
// .<base>.tmp-<random>, with perm (less the umask); O_EXCL and O_NOFOLLOW:
// it never opens an existing file or follows a link.
func createTemp(path string, perm os.FileMode) (int, string, error) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+tempInfix
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		var fd int
		err := ignoringEINTR(func() (err error) {
			fd, err = unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
			return err
		})
		if err == nil {
			return fd, name, nil
		}
		if err != unix.EEXIST || try == 100 {
			return -1, "", &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
}

// rename is os.Rename without its extra lstat of newpath (which only
// matters when renaming a directory).
func rename(oldpath, newpath string) error {
	if err := unix.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// mkdirAll creates dir and missing parents with exactly perm and returns
// the directories it created, outermost first. An existing dir is left as
// it is. umask (-1: unknown) says whether a chmod is needed after mkdir.
func mkdirAll(dir string, perm os.FileMode, umask int) ([]string, error) {
	err := unix.Mkdir(dir, uint32(perm.Perm()))
	var created []string
	if err == unix.ENOENT && filepath.Dir(dir) != dir {
		if created, err = mkdirAll(filepath.Dir(dir), perm, umask); err != nil {
			return created, err
		}
		err = unix.Mkdir(dir, uint32(perm.Perm()))
	}
	switch {
	case err == unix.EEXIST:
		return created, nil
	case err != nil:
		return created, fmt.Errorf("create directory: %w", &fs.PathError{Op: "mkdir", Path: dir, Err: err})
	}
	if narrows(umask, perm) {
		if err := unix.Chmod(dir, uint32(perm.Perm())); err != nil {
			return created, fmt.Errorf("create directory: %w", &fs.PathError{Op: "chmod", Path: dir, Err: err})
		}
	}
	return append(created, dir), nil
}
