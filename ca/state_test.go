package ca

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestOpen(t *testing.T) {
	setUmask(t, 0o022)
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		create  bool
		wantErr error
		wantMsg []string
		// wantChmod is the mode a *PermissionError asks for (the command
		// line turns it into the chmod to run).
		wantChmod fs.FileMode
	}{
		{name: "creates missing dir 0700", create: true},
		{name: "missing without create", wantErr: ErrNoState, wantMsg: []string{"state"}},
		{name: "existing 0700", setup: func(t *testing.T, dir string) { os.Mkdir(dir, 0o700) }},
		{
			name:      "loose dir",
			setup:     func(t *testing.T, dir string) { os.Mkdir(dir, 0o700); os.Chmod(dir, 0o755) },
			wantErr:   ErrLoosePermissions,
			wantMsg:   []string{"0755"},
			wantChmod: 0o700,
		},
		{
			name: "loose CA key",
			setup: func(t *testing.T, dir string) {
				os.MkdirAll(filepath.Join(dir, "ca"), 0o700)
				os.Chmod(dir, 0o700)
				os.WriteFile(filepath.Join(dir, "ca", caKeyFile), []byte("x"), 0o640)
				os.Chmod(filepath.Join(dir, "ca", caKeyFile), 0o640)
			},
			wantErr:   ErrLoosePermissions,
			wantMsg:   []string{caKeyFile, "0640"},
			wantChmod: 0o600,
		},
		{
			name: "loose gossip file",
			setup: func(t *testing.T, dir string) {
				os.Mkdir(dir, 0o700)
				os.WriteFile(filepath.Join(dir, gossipFile), []byte("{}"), 0o604)
				os.Chmod(filepath.Join(dir, gossipFile), 0o604)
			},
			wantErr: ErrLoosePermissions,
			wantMsg: []string{gossipFile},
		},
		{
			name:    "not a directory",
			setup:   func(t *testing.T, dir string) { os.WriteFile(dir, nil, 0o600) },
			wantMsg: []string{"not a directory"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			s, err := Open(dir, OpenOptions{Create: tc.create})
			if tc.wantErr == nil && tc.wantMsg == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got := mode(t, s.Dir()); got != 0o700 {
					t.Errorf("dir mode %04o, want 0700", got)
				}
				return
			}
			checkErr(t, err, tc.wantErr, tc.wantMsg...)
			var pe *PermissionError
			if tc.wantChmod != 0 && (!errors.As(err, &pe) || pe.Want() != tc.wantChmod) {
				t.Errorf("error %v: want a *PermissionError asking for %04o", err, tc.wantChmod)
			}
		})
	}
}

// setUmask sets the process umask for the test and restores it after.
func setUmask(t *testing.T, m int) {
	old := syscall.Umask(m)
	t.Cleanup(func() { syscall.Umask(old) })
}

// A state directory that another user owns is refused even at 0700: its
// owner could have planted a CA (issue 8). Needs root to chown.
func TestOpenRefusesForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the directory to another user")
	}
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir, OpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCA(CAOptions{}); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	}); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, OpenOptions{})
	if !errors.Is(err, ErrForeignOwner) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("open a nobody-owned state directory: %v; want ErrForeignOwner naming it", err)
	}
	// Only the directory back to us: the planted CA key is still refused.
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"ca", "nodes", "ca/trust", "ca/archive"} {
		os.Chown(filepath.Join(dir, d), 0, 0)
	}
	_, err = Open(dir, OpenOptions{})
	if !errors.Is(err, ErrForeignOwner) || !strings.Contains(err.Error(), "consul-agent-ca-key.pem") {
		t.Fatalf("open with a nobody-owned CA key: %v; want ErrForeignOwner naming the key", err)
	}
}
