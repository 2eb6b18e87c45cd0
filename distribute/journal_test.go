package distribute

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadJournalRefusesCorrupt checks that a damaged or hand-edited journal
// is refused with an error instead of panicking or reaching a node, where
// its paths would become `rm -rf` arguments.
func TestLoadJournalRefusesCorrupt(t *testing.T) {
	const good = `{"version":1,"run_id":"0123abcd","phase":"staging","nodes":[{"node":"n1","state_dir":"/var/lib/mtlsctl",
"stage":".mtlsctl-stage-0123abcd","upload_dir":"/home/u/.mtlsctl-upload-0123abcd","created_dirs":["/etc/consul.d"],
"files":[{"path":"/etc/consul.d/a.json","staged":"/etc/consul.d/.mtlsctl-stage-0123abcd/a.json"}]}]}`
	tests := []struct {
		name, json, want string
	}{
		{"null node", `{"run_id":"0123abcd","nodes":[null]}`, "nodes[0]"},
		{"no run id", `{"nodes":[]}`, "run_id"},
		{"run id with a slash", `{"run_id":"../x","nodes":[]}`, "run_id"},
		{"empty stage", strings.Replace(good, `"stage":".mtlsctl-stage-0123abcd"`, `"stage":""`, 1), "stage"},
		{"upload dir is root", strings.Replace(good, `"/home/u/.mtlsctl-upload-0123abcd"`, `"/"`, 1), "upload_dir"},
		{"relative state dir", strings.Replace(good, `"/var/lib/mtlsctl"`, `"var"`, 1), "state_dir"},
		{"staged elsewhere", strings.Replace(good, `"/etc/consul.d/.mtlsctl-stage-0123abcd/a.json"`, `"/etc/consul.d"`, 1), "staged"},
		{"unclean created dir", strings.Replace(good, `["/etc/consul.d"]`, `["/etc/../"]`, 1), "created_dirs"},
		{"node twice", strings.Replace(good, `]}]}`, `]},{"node":"n1"}]}`, 1), "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, journalName), []byte(tt.json), 0o600); err != nil {
				t.Fatal(err)
			}
			j, err := loadJournal(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "corrupt") {
				t.Fatalf("loadJournal = %v, %v; want an error about %q", j, err, tt.want)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, journalName), []byte(good), 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := loadJournal(dir)
		if err != nil || j == nil || len(j.Nodes) != 1 {
			t.Fatalf("loadJournal = %v, %v", j, err)
		}
	})
}
