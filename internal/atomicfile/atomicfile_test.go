package atomicfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name  string
		umask int
		perm  os.FileMode
		old   bool
	}{
		{"new secret", 0o022, 0o600, false},
		{"new public under a strict umask", 0o077, 0o644, false},
		{"umask narrowing the owner", 0o277, 0o600, false},
		{"no umask", 0, 0o640, false},
		{"replace, mode changes", 0o022, 0o600, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir() // before the umask, which may forbid writing in it
			p := filepath.Join(dir, "f")
			if tc.old {
				write(t, p, "old content", 0o644)
			}
			setUmask(t, tc.umask)
			if err := WriteFile(p, []byte("new"), tc.perm); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(p); string(got) != "new" {
				t.Errorf("content %q, want %q", got, "new")
			}
			if got := mode(t, p); got != tc.perm {
				t.Errorf("mode %04o, want %04o", got, tc.perm)
			}
			noTemps(t, dir, 1)
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		err := WriteFile(filepath.Join(t.TempDir(), "no", "f"), nil, 0o600)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "no/f") {
			t.Errorf("error %v should be ErrNotExist and name the file", err)
		}
	})
}

// TestWriteFileFailure checks that a write that fails leaves the target as
// it was and no temporary file behind.
func TestWriteFileFailure(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares dir (where the target f holds "old content") and
		// returns the data to write; it skips when it cannot make the
		// write fail here.
		setup func(t *testing.T, dir string) []byte
	}{
		{
			name: "directory not writable",
			setup: func(t *testing.T, dir string) []byte {
				if os.Geteuid() == 0 {
					t.Skip("root writes into a directory whatever its mode")
				}
				chmod(t, dir, 0o500)
				return []byte("new")
			},
		},
		{
			name: "disk full midway",
			setup: func(t *testing.T, dir string) []byte {
				// RLIMIT_FSIZE makes a write past the limit fail with EFBIG
				// (Go ignores SIGXFSZ), as a full disk would fail it.
				var old unix.Rlimit
				if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
					t.Skip(err)
				}
				lim := old
				lim.Cur = 4096
				if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &lim); err != nil {
					t.Skip(err)
				}
				t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_FSIZE, &old) })
				return bytes.Repeat([]byte("x"), 1<<20)
			},
		},
		{
			name: "rename fails",
			setup: func(t *testing.T, dir string) []byte {
				// The target is a non-empty directory: the temporary file
				// is written, then cannot replace it.
				os.Remove(filepath.Join(dir, "f"))
				if err := os.MkdirAll(filepath.Join(dir, "f", "inside"), 0o700); err != nil {
					t.Fatal(err)
				}
				return []byte("new")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "f")
			write(t, target, "old content", 0o640)
			data := tc.setup(t, dir)
			before := snapshot(t, target)

			err := WriteFile(target, data, 0o600)
			if err == nil {
				t.Fatal("WriteFile succeeded, want an error")
			}
			if !strings.Contains(err.Error(), target) {
				t.Errorf("error %q does not name %s", err, target)
			}
			if got := snapshot(t, target); got != before {
				t.Errorf("target changed by a failed write: %q, want %q", got, before)
			}
			chmod(t, dir, 0o700)
			noTemps(t, dir, 1)
		})
	}
}

func TestWriteFiles(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		umask   int
		dirPerm os.FileMode
	}{
		{"few files, usual umask", 3, 0o022, 0o700},
		{"syncfs batch, usual umask", syncfsThreshold + 5, 0o022, 0o700},
		{"strict umask, open directories", 3, 0o077, 0o755},
		{"umask narrowing the owner", syncfsThreshold + 5, 0o277, 0o700},
		{"no umask", 3, 0, 0o750},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir() // before the umask, which may forbid writing in it
			setUmask(t, tc.umask)
			files := batch(dir, tc.n)
			if err := WriteFiles(dir, files, tc.dirPerm); err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if got := mode(t, f.Path); got != f.Perm {
					t.Errorf("%s: mode %04o, want %04o", f.Path, got, f.Perm)
				}
				if got, err := os.ReadFile(f.Path); err != nil || !bytes.Equal(got, f.Data) {
					t.Errorf("%s: content %q (%v), want %q", f.Path, got, err, f.Data)
				}
			}
			for _, d := range []string{"a", "a/b"} {
				if got := mode(t, filepath.Join(dir, d)); got != tc.dirPerm {
					t.Errorf("created dir %s mode %04o, want %04o", d, got, tc.dirPerm)
				}
			}
			noTemps(t, filepath.Join(dir, "a", "b"), tc.n)
		})
	}
	t.Run("existing directory keeps its mode", func(t *testing.T) {
		dir := t.TempDir()
		chmod(t, dir, 0o755)
		if err := WriteFiles(dir, []File{{Path: filepath.Join(dir, "f"), Data: []byte("x"), Perm: 0o600}}, 0o700); err != nil {
			t.Fatal(err)
		}
		if got := mode(t, dir); got != 0o755 {
			t.Errorf("dir mode %04o, want 0755 (left as it was)", got)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if err := WriteFiles(filepath.Join(t.TempDir(), "none"), nil, 0o700); err != nil {
			t.Fatal(err)
		}
	})
}

// TestWriteFilesFailure checks that a batch that fails leaves no temporary
// file anywhere, and that a target whose rename was not reached is as it
// was.
func TestWriteFilesFailure(t *testing.T) {
	for _, n := range []int{2, syncfsThreshold + 5} {
		dir := t.TempDir()
		files := batch(dir, n)
		// Directories are renamed in sorted order: "a/b" before "z".
		keep := filepath.Join(dir, "z", "keep")
		write(t, filepath.Join(dir, "z", "keep"), "old content", 0o600)
		blocked := filepath.Join(dir, "z", "dir")
		if err := os.MkdirAll(filepath.Join(blocked, "inside"), 0o700); err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Path: blocked, Data: []byte("x"), Perm: 0o600}, File{Path: keep, Data: []byte("new"), Perm: 0o600})

		err := WriteFiles(dir, files, 0o700)
		if err == nil || !strings.Contains(err.Error(), blocked) {
			t.Fatalf("%d files: error %v, want one naming %s", n, err, blocked)
		}
		if got, _ := os.ReadFile(keep); string(got) != "old content" {
			t.Errorf("%d files: %s holds %q, want its old content", n, keep, got)
		}
		noTemps(t, filepath.Join(dir, "a", "b"), n)
		noTemps(t, filepath.Join(dir, "z"), 2)
	}
}

// batch is n files under dir/a/b, alternately 0600 and 0644.
func batch(dir string, n int) []File {
	var files []File
	for i := range n {
		perm := os.FileMode(0o600)
		if i%2 == 1 {
			perm = 0o644
		}
		name := string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		files = append(files, File{Path: filepath.Join(dir, "a", "b", name), Data: []byte{byte(i)}, Perm: perm})
	}
	return files
}

// noTemps fails the test when dir holds a temporary file or not want
// entries.
func noTemps(t *testing.T, dir string, want int) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), tempInfix) {
			t.Errorf("temporary file left: %s", filepath.Join(dir, e.Name()))
		}
	}
	if len(entries) != want {
		t.Errorf("%s: %d entries, want %d", dir, len(entries), want)
	}
}

// snapshot is a file's mode and content, to compare before and after.
func snapshot(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.IsDir() {
		entries, _ := os.ReadDir(path)
		return fi.Mode().String() + " " + strings.Repeat("entry ", len(entries))
	}
	data, _ := os.ReadFile(path)
	return fi.Mode().String() + " " + string(data)
}

func write(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, perm)
}

func chmod(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// setUmask sets the process umask for the test and restores it after.
func setUmask(t *testing.T, m int) {
	old := syscall.Umask(m)
	t.Cleanup(func() { syscall.Umask(old) })
}
