package ca

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The state holds a few files per node, so a 1,000-node cluster means
// thousands of small reads and writes. They go through raw descriptors:
// os.File registers every file with the poller (two or three more system
// calls per file, for files that can never block).

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

// readFileAt reads name relative to the directory dirfd (unix.AT_FDCWD for
// a path), following links as os.ReadFile does. With secret, a file that
// group or others can access is refused (ErrLoosePermissions). path names
// the file in errors, which are *fs.PathError (errors.Is(err,
// fs.ErrNotExist) holds for a missing file).
func readFileAt(dirfd int, name, path string, secret bool) ([]byte, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if secret {
		if err := permError(path, os.FileMode(st.Mode&0o777), false); err != nil {
			return nil, err
		}
	}
	// One read for the whole file (and one more to see the end), as
	// os.ReadFile does.
	data := make([]byte, 0, max(int(st.Size), 0)+512)
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := unix.Read(fd, data[len(data):cap(data)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if n == 0 {
			return data, nil
		}
		data = data[:len(data)+n]
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
// .<base>.tmp-<random>, with mode (less the umask); O_EXCL and O_NOFOLLOW:
// it never opens an existing file or follows a link.
func createTemp(path string, mode os.FileMode) (int, string, error) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+strings.TrimSuffix(tempPattern, "*")
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		var fd int
		err := ignoringEINTR(func() (err error) {
			fd, err = unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode.Perm()))
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
