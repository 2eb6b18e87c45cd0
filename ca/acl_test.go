package ca

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestACLTokensEnsureRenewStore(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "s"), OpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := st.ACLTokens()
	if err != nil || len(toks.Nodes) != 0 {
		t.Fatalf("empty state: %v %v", toks, err)
	}
	want := map[string][]string{"n1": {"zk-2181-a", "egress-a"}, "n2": {"egress-b"}}
	changed, err := toks.Ensure(want, false, nil)
	if err != nil || !changed || toks.Count() != 5 {
		t.Fatalf("ensure: changed=%v count=%d err=%v", changed, toks.Count(), err)
	}
	if changed, _ := toks.Ensure(want, false, nil); changed {
		t.Fatal("a second Ensure with the same wants changed something")
	}
	first := toks.Nodes["n1"].Services["zk-2181-a"]
	if !ValidToken(first.AccessorID) || !ValidToken(first.SecretID) || first.AccessorID == first.SecretID {
		t.Fatalf("bad token %+v", first)
	}
	// n2 leaves, n1 loses a service: their tokens are retired.
	if _, err := toks.Ensure(map[string][]string{"n1": {"zk-2181-a"}}, false, nil); err != nil {
		t.Fatal(err)
	}
	if len(toks.Retired) != 3 || toks.Count() != 2 || toks.Nodes["n1"].Services["zk-2181-a"] != first {
		t.Fatalf("after removal: retired %d, count %d", len(toks.Retired), toks.Count())
	}
	if err := toks.Renew(nil); err != nil {
		t.Fatal(err)
	}
	if toks.Nodes["n1"].Services["zk-2181-a"] == first || len(toks.Retired) != 5 {
		t.Fatalf("renew kept the old token or lost track of it (retired %d)", len(toks.Retired))
	}
	if err := st.SetACLTokens(toks); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(st.Dir(), "acl", "tokens.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("tokens.json: %v %v", fi, err)
	}
	back, err := st.ACLTokens()
	if err != nil || back.Count() != 2 || len(back.Retired) != 5 {
		t.Fatalf("reload: %+v %v", back, err)
	}

	if _, err := st.ManagementToken(); !errors.Is(err, ErrNoManagementToken) {
		t.Fatalf("no management token yet: %v", err)
	}
	if err := st.SetManagementToken("not-a-token"); err == nil {
		t.Fatal("a non-UUID management token was stored")
	}
	mt, _ := NewACLToken(nil)
	if err := st.SetManagementToken(mt.SecretID); err != nil {
		t.Fatal(err)
	}
	got, err := st.ManagementToken()
	if err != nil || got != mt.SecretID {
		t.Fatalf("management token back: %v", err)
	}
	if err := os.Chmod(st.ManagementTokenFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(st.Dir(), OpenOptions{}); !errors.Is(err, ErrLoosePermissions) {
		t.Fatalf("a 0644 management token was accepted: %v", err)
	}
}
