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

func TestWriteFileAtomic(t *testing.T) {
	setUmask(t, 0o077)
	tests := []struct {
		name string
		mode os.FileMode
		old  bool
	}{
		{"new secret", 0o600, false},
		{"new public ignores umask", 0o644, false},
		{"replace", 0o600, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if tc.old {
				os.WriteFile(p, []byte("old content"), 0o644)
			}
			if err := WriteFileAtomic(p, []byte("new"), tc.mode); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(p); string(got) != "new" {
				t.Errorf("content %q", got)
			}
			if got := mode(t, p); got != tc.mode {
				t.Errorf("mode %04o, want %04o", got, tc.mode)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("leftover temp files: %v", entries)
			}
		})
	}
	t.Run("missing dir", func(t *testing.T) {
		err := WriteFileAtomic(filepath.Join(t.TempDir(), "no", "f"), nil, 0o600)
		if err == nil || !strings.Contains(err.Error(), "no/f") {
			t.Errorf("error %v should name the file", err)
		}
	})
}

func TestWriteBatch(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		umask int
	}{
		{"few files, usual umask", 3, 0o022},
		{"syncfs batch, usual umask", syncfsThreshold + 5, 0o022},
		{"strict umask", 3, 0o077},
		{"umask narrowing the owner", syncfsThreshold + 5, 0o277},
		{"no umask", 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir() // before the umask, which may forbid writing in it
			setUmask(t, tc.umask)
			var files []pendingFile
			for i := range tc.n {
				mode := os.FileMode(secretMode)
				if i%2 == 1 {
					mode = publicMode
				}
				files = append(files, pendingFile{path: filepath.Join(dir, "a", "b", string(rune('a'+i%26))+strings.Repeat("x", i/26)), data: []byte{byte(i)}, mode: mode})
			}
			if err := writeBatch(dir, files); err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if got := mode(t, f.path); got != f.mode {
					t.Errorf("%s: mode %04o, want %04o", f.path, got, f.mode)
				}
				if got, err := os.ReadFile(f.path); err != nil || string(got) != string(f.data) {
					t.Errorf("%s: content %q (%v), want %q", f.path, got, err, f.data)
				}
			}
			for _, d := range []string{"a", "a/b"} {
				if got := mode(t, filepath.Join(dir, d)); got != dirMode {
					t.Errorf("created dir %s mode %04o, want 0700", d, got)
				}
			}
			entries, _ := os.ReadDir(filepath.Join(dir, "a", "b"))
			if len(entries) != tc.n {
				t.Errorf("%d entries, want %d (temp files left?)", len(entries), tc.n)
			}
		})
	}
}

// setUmask sets the process umask for the test and restores it after.
func setUmask(t *testing.T, m int) {
	old := syscall.Umask(m)
	t.Cleanup(func() { syscall.Umask(old) })
}
