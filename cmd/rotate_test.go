package cmd

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// runRotate runs `rotate ...` in-process and returns the error Main would see.
func runRotate(t *testing.T, args ...string) error {
	t.Helper()
	var out, errb bytes.Buffer
	a := NewApp(strings.NewReader(""), &out, &errb)
	return a.RunContext(context.Background(), append([]string{"mtlsctl"}, args...))
}

func TestRotateCommand(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	state := filepath.Join(t.TempDir(), "state")
	inv := example("edge-5")
	if code, _, stderr := run(t, "-i", inv, "--state", state, "generate"); code != 0 {
		t.Fatalf("generate: %s", stderr)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"gossip refuses --nodes", []string{"rotate", "gossip", "--nodes", "n1"}, "--nodes is not allowed"},
		{"ca refuses --nodes", []string{"rotate", "ca", "--nodes", "n1"}, "--nodes is not allowed"},
		{"certs unknown node", []string{"rotate", "certs", "--nodes", "nope"}, `"nope" is not a node`},
		{"gossip needs --yes off a terminal", []string{"rotate", "gossip"}, "pass --yes"},
		{"certs needs --yes off a terminal", []string{"rotate", "certs"}, "pass --yes"},
		{"ca needs --yes off a terminal", []string{"rotate", "ca"}, "pass --yes"},
		{"no such rotation", []string{"rotate", "ca", "extra"}, "unexpected argument"},
		{"tokens refuses --nodes", []string{"rotate", "tokens", "--nodes", "n1"}, "--nodes is not allowed"},
		{"tokens needs the live cluster", []string{"rotate", "tokens", "--skip-live"}, "flag provided but not defined: -skip-live"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runRotate(t, append([]string{"-i", inv, "--state", state}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	var names []string
	for _, c := range rotateCommand().Subcommands {
		names = append(names, c.Name)
	}
	if strings.Join(names, " ") != "gossip certs ca tokens" {
		t.Errorf("subcommands %v", names)
	}
}
