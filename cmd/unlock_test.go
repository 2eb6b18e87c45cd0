package cmd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/distribute"
)

func TestUnlockValue(t *testing.T) {
	tests := []struct {
		in   string
		want distribute.Unlock
		err  bool
	}{
		{"true", distribute.Unlock{Gone: true}, false},
		{"false", distribute.Unlock{}, false},
		{"0123456789ABCDEF", distribute.Unlock{Gone: true, Run: "0123456789abcdef"}, false},
		{"", distribute.Unlock{}, true},
		{"yes-please", distribute.Unlock{}, true},
		{"../lock", distribute.Unlock{}, true},
		{strings.Repeat("a", 65), distribute.Unlock{}, true},
	}
	for _, tc := range tests {
		var v unlockValue
		err := v.Set(tc.in)
		if (err != nil) != tc.err || v.u != tc.want {
			t.Errorf("Set(%q) = %+v, %v; want %+v (error: %v)", tc.in, v.u, err, tc.want, tc.err)
		}
	}
}

// --force-unlock stands alone or takes =RUN; a value that is no run id is
// a usage error (exit 3) naming the flag.
func TestForceUnlockFlag(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.yaml")
	for _, args := range [][]string{
		{"apply", "--yes", "--force-unlock"},
		{"apply", "--yes", "--force-unlock=0123456789abcdef"},
		{"uninstall", "--yes", "--force-unlock=0123456789abcdef"},
		{"rotate", "certs", "--yes", "--force-unlock"},
	} {
		code, _, errOut := run(t, append([]string{"-i", missing}, args...)...)
		if code != 1 || !strings.Contains(errOut, "none.yaml") {
			t.Errorf("%v: exit %d, want 1 for the missing cluster file (the flag parsed):\n%s", args, code, errOut)
		}
	}
	code, _, errOut := run(t, "-i", missing, "apply", "--yes", "--force-unlock=not-a-run")
	if code != 3 || !strings.Contains(errOut, "force-unlock") || !strings.Contains(errOut, "not a run id") {
		t.Errorf("--force-unlock=not-a-run: exit %d, want 3 naming the flag:\n%s", code, errOut)
	}
	if _, out, _ := run(t, "apply", "--help"); !strings.Contains(out, "--force-unlock[=RUN]") {
		t.Errorf("apply --help does not show --force-unlock[=RUN]:\n%s", out)
	}
}
