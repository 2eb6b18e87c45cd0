package ca

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLayoutNames pins the on-disk names other packages' records use:
// state directories written by earlier versions must keep working.
func TestLayoutNames(t *testing.T) {
	s := newState(t)
	for got, want := range map[string]string{
		s.JournalDir():                 filepath.Join(s.Dir(), "apply"),
		s.RotationFile(GossipRotation): filepath.Join(s.Dir(), "rotation-gossip.json"),
		s.RotationFile(CARotation):     filepath.Join(s.Dir(), "rotation-ca.json"),
	} {
		if got != want {
			t.Errorf("path %s, want %s", got, want)
		}
	}
}

func TestRotationProgress(t *testing.T) {
	setUmask(t, 0o022)
	s := newState(t)
	for _, r := range []Rotation{GossipRotation, CARotation} {
		t.Run(r.String(), func(t *testing.T) {
			if _, ok, err := s.ReadRotation(r); ok || err != nil {
				t.Fatalf("before any write: ok %v, err %v; want none in progress", ok, err)
			}
			for _, step := range []string{`{"step":"one"}`, `{"step":"two"}`} {
				if err := s.WriteRotation(r, []byte(step)); err != nil {
					t.Fatal(err)
				}
				data, ok, err := s.ReadRotation(r)
				if !ok || err != nil || string(data) != step {
					t.Fatalf("read back %q, ok %v, err %v; want %q", data, ok, err, step)
				}
			}
			if got := mode(t, s.RotationFile(r)); got != secretMode {
				t.Errorf("mode %04o, want %04o", got, secretMode)
			}
			for range 2 { // clearing twice is fine
				if err := s.ClearRotation(r); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := os.Stat(s.RotationFile(r)); !os.IsNotExist(err) {
				t.Errorf("progress file still there after clear (%v)", err)
			}
		})
	}
	t.Run("zero rotation", func(t *testing.T) {
		if err := s.WriteRotation(Rotation{}, []byte("x")); err == nil {
			t.Error("writing the zero Rotation succeeded")
		}
		if _, _, err := s.ReadRotation(Rotation{}); err == nil {
			t.Error("reading the zero Rotation succeeded")
		}
		if err := s.ClearRotation(Rotation{}); err == nil {
			t.Error("clearing the zero Rotation succeeded")
		}
	})
}
