package ca

import (
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// The state holds a few files per node, so a 1,000-node cluster means
// thousands of small reads. They go through raw descriptors: os.File
// registers every file with the poller (two or three more system calls per
// file, for files that can never block). Writes go through
// internal/atomicfile, which does the same.

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
		if err := ownerError(path, st.Uid); err != nil {
			return nil, err
		}
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
