package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
)

// Places in the state directory that other packages keep records in. They
// reach them only through State's methods, so that ca alone decides the
// layout. The names are those of earlier versions: existing state
// directories keep working.
const (
	journalDir         = "apply"
	gossipRotationFile = "rotation-gossip.json"
	caRotationFile     = "rotation-ca.json"
)

// JournalDir returns the directory where apply keeps its journal, so that
// an interrupted apply is rolled back or forward by the next run. ca does
// not create it and does not read what is in it: the journal's writer owns
// its files.
func (s *State) JournalDir() string { return s.path(journalDir) }

// Rotation names a multi-step rotation whose progress the state directory
// records, so that a re-run resumes it.
type Rotation struct {
	name string
	file string
}

// The rotations that record their progress.
var (
	GossipRotation = Rotation{name: "gossip", file: gossipRotationFile}
	CARotation     = Rotation{name: "ca", file: caRotationFile}
)

func (r Rotation) String() string { return r.name }

// RotationFile returns the path of the file that records r's progress, to
// name it in messages.
func (s *State) RotationFile(r Rotation) string { return s.path(r.file) }

// ReadRotation returns the progress recorded for r; ok is false when no
// rotation r is in progress.
func (s *State) ReadRotation(r Rotation) (data []byte, ok bool, err error) {
	if err := r.check(); err != nil {
		return nil, false, err
	}
	data, err = os.ReadFile(s.RotationFile(r))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s rotation progress: %w", r, err)
	}
	return data, true, nil
}

// WriteRotation records r's progress, replacing what was recorded (0600,
// atomically). The caller holds the state lock.
func (s *State) WriteRotation(r Rotation, data []byte) error {
	if err := r.check(); err != nil {
		return err
	}
	return atomicfile.WriteFile(s.RotationFile(r), data, secretMode)
}

// ClearRotation removes r's progress record, durably: the rotation is done.
// Clearing a rotation that is not in progress is not an error.
func (s *State) ClearRotation(r Rotation) error {
	if err := r.check(); err != nil {
		return err
	}
	if err := os.Remove(s.RotationFile(r)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear %s rotation progress: %w", r, err)
	}
	return syncDir(s.dir)
}

// check refuses the zero Rotation, which names no file.
func (r Rotation) check() error {
	if r.file == "" {
		return errors.New("ca: unknown rotation")
	}
	return nil
}
