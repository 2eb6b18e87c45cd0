package distribute

import (
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
)

// Every exec session costs the node a fork of sshd and a login shell that
// reads the user's dotfiles: an apply must stay within one connection and
// at most two sessions per node, whatever the number of files: one remote
// shell that runs every step (inspect, lock, verify with consul validate,
// commit with reload) and one SFTP session for the upload.
func TestApplyRemoteWorkBudget(t *testing.T) {
	const maxExec, maxSFTP = 1, 1
	f := newFixture(t, nodeSpec{name: "s1", server: true}, nodeSpec{name: "s2", server: true}, nodeSpec{name: "c1"})
	tests := []struct {
		name    string
		variant string
		changed bool
		// wantExec and wantSFTP are exact when changed is false, upper
		// bounds otherwise.
		wantExec, wantSFTP int
	}{
		{name: "first apply: create, validate, restart", variant: "", changed: true, wantExec: maxExec, wantSFTP: maxSFTP},
		{name: "changed config: reload", variant: "-debug", changed: true, wantExec: maxExec, wantSFTP: maxSFTP},
		{name: "nothing to do: inspect only", variant: "-debug", changed: false, wantExec: 1, wantSFTP: 0},
	}
	// f.bundles signs new certificates each time: build each variant once.
	bundles := map[string][]consulcfg.Bundle{}
	for _, tc := range tests {
		if bundles[tc.variant] == nil {
			bundles[tc.variant] = f.bundles(tc.variant)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]sshsandbox.Sessions{}
			accepts := map[string]int{}
			for name, srv := range f.servers {
				before[name], accepts[name] = srv.Sessions(), srv.Accepts()
			}
			res, err := f.apply(t, bundles[tc.variant], f.opts())
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed != tc.changed {
				t.Fatalf("Changed = %v, want %v", res.Changed, tc.changed)
			}
			for name, srv := range f.servers {
				got := srv.Sessions()
				exec, sftp := got.Exec-before[name].Exec, got.SFTP-before[name].SFTP
				if n := srv.Accepts() - accepts[name]; n != 1 {
					t.Errorf("%s: %d SSH connections, want 1", name, n)
				}
				if tc.changed && (exec > tc.wantExec || sftp > tc.wantSFTP) {
					t.Errorf("%s: %d exec and %d SFTP sessions, want at most %d and %d", name, exec, sftp, tc.wantExec, tc.wantSFTP)
				}
				if !tc.changed && (exec != tc.wantExec || sftp != tc.wantSFTP) {
					t.Errorf("%s: %d exec and %d SFTP sessions, want %d and %d", name, exec, sftp, tc.wantExec, tc.wantSFTP)
				}
			}
		})
	}
	// The first apply went through consul validate on every node.
	for name, srv := range f.servers {
		validated := false
		for _, c := range srv.Calls() {
			validated = validated || strings.HasPrefix(c, "consul validate")
		}
		if !validated {
			t.Errorf("%s: consul validate never ran: %q", name, srv.Calls())
		}
	}
}
