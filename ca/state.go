package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Sentinel errors; each is wrapped with the path and what is wrong. What to
// do next is the command line's to say, keyed by errors.Is.
var (
	// ErrNoState means the state directory does not exist (and
	// OpenOptions.Create was not set).
	ErrNoState = errors.New("state directory does not exist")
	// ErrLoosePermissions means a state directory or key file is accessible
	// to group or others.
	ErrLoosePermissions = errors.New("permissions too open")
	// ErrForeignOwner means a state directory or key file belongs to
	// another user, who could have planted or read what is in it.
	ErrForeignOwner = errors.New("owned by another user")
	// ErrCorrupt means a state file exists but cannot be used as it is.
	ErrCorrupt = errors.New("state file is corrupt")
)

// File and directory names inside the state directory.
const (
	caDir      = "ca"
	caCertFile = "consul-agent-ca.pem"
	caKeyFile  = "consul-agent-ca-key.pem"
	archiveDir = "archive"
	trustDir   = "trust"
	gossipFile = "gossip.json"
	nodesDir   = "nodes"
	certFile   = "cert.pem"
	keyFile    = "key.pem"
	specFile   = "spec.json"
	portsFile  = "ports.json"
	lockFile   = "lock"
	dirMode    = 0o700
	secretMode = 0o600
	publicMode = 0o644
	looseBits  = 0o077
)

// nodeArchiveDir, under nodes/, keeps the directories of nodes removed
// from the cluster file (hidden, so storedNodes skips it).
const nodeArchiveDir = ".archive"

// OpenOptions says how to open a state directory.
type OpenOptions struct {
	// Create makes the directory (0700) when it does not exist.
	Create bool
	// AllowMissing opens a directory that does not exist without creating
	// it: every read finds nothing (no CA, no gossip key, no leaves), for
	// a preview of the first generate. Writing through it is an error.
	AllowMissing bool
}

// State is an opened state directory. Its methods may be called from several
// goroutines, but changes must be serialised by the caller (see [State.Lock]).
type State struct {
	dir string
}

// Open opens the state directory dir, creating it when opts.Create is set. It
// refuses a directory, or a CA or gossip key file, that group or others can
// access: the state holds the CA key.
func Open(dir string, opts OpenOptions) (*State, error) {
	if dir == "" {
		return nil, errors.New("state directory: empty path (set --state or MTLSCTL_STATE)")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist) && opts.Create:
		if err := os.MkdirAll(abs, dirMode); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
		// MkdirAll is subject to the umask, and an existing parent is fine;
		// only the state directory itself must be 0700.
		if err := os.Chmod(abs, dirMode); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
		if err := syncDir(filepath.Dir(abs)); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
	case errors.Is(err, fs.ErrNotExist) && opts.AllowMissing:
		return &State{dir: abs}, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s", ErrNoState, abs)
	case err != nil:
		return nil, fmt.Errorf("state directory: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("state directory %s is not a directory", abs)
	}
	s := &State{dir: abs}
	for _, p := range []string{abs, s.path(caDir), s.path(nodesDir), s.path(caDir, trustDir), s.path(caDir, archiveDir), s.path(nodesDir, nodeArchiveDir), s.path(aclDir)} {
		if err := checkPerm(p, true); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	for _, p := range []string{s.path(caDir, caKeyFile), s.path(gossipFile), s.path(aclDir, aclTokensFile), s.path(aclDir, managementFile)} {
		if err := checkPerm(p, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return s, nil
}

// Dir returns the absolute path of the state directory.
func (s *State) Dir() string { return s.dir }

func (s *State) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// checkPerm returns a *PermissionError (matching ErrLoosePermissions) when
// path is accessible to group or others.
func checkPerm(path string, dir bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := ownerError(path, st.Uid); err != nil {
			return err
		}
	}
	return permError(path, fi.Mode(), dir)
}

// ownerError refuses a state path that another user owns: a 0700
// directory of someone else's could hold a CA they planted.
func ownerError(path string, uid uint32) error {
	if me := os.Geteuid(); me >= 0 && uid != uint32(me) {
		return fmt.Errorf("%w: %s is owned by uid %d, not by you (uid %d): someone else could have put its contents there; check them, then chown it to yourself, or use another --state", ErrForeignOwner, path, uid, me)
	}
	return nil
}

// PermissionError is a secret file or the state directory that group or
// others can access; it matches ErrLoosePermissions with errors.Is.
type PermissionError struct {
	Path string
	Mode fs.FileMode // the permission bits found
	Dir  bool
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("%s: %s has mode %04o, readable by group or others; it holds secrets", ErrLoosePermissions, e.Path, e.Mode)
}

// Unwrap returns ErrLoosePermissions.
func (e *PermissionError) Unwrap() error { return ErrLoosePermissions }

// Want is the mode the file or directory should have: 0700 or 0600.
func (e *PermissionError) Want() fs.FileMode {
	if e.Dir {
		return 0o700
	}
	return 0o600
}

func permError(path string, mode fs.FileMode, dir bool) error {
	if mode.Perm()&looseBits == 0 {
		return nil
	}
	return &PermissionError{Path: path, Mode: mode.Perm(), Dir: dir}
}

// readSecret reads a private key or secret file, refusing it when group or
// others can access it.
func readSecret(path string) ([]byte, error) {
	return readFileAt(unix.AT_FDCWD, path, path, true)
}
