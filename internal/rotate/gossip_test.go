package rotate

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
)

// gossipState makes a state directory whose keyring holds one key.
func gossipState(t *testing.T) (*ca.State, string) {
	t.Helper()
	st, err := ca.Open(filepath.Join(t.TempDir(), "state"), ca.OpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.NewGossipKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetKeyring(&ca.Keyring{Primary: key}); err != nil {
		t.Fatal(err)
	}
	return st, key
}

var threeNodes = Expected{LAN: map[string][]string{"dc1": {"n1", "n2", "n3"}}, WAN: []string{"n1.dc1", "n2.dc1", "n3.dc1"}}

type gossipEnv struct {
	st      *ca.State
	old     string
	f       *fakeCluster
	applies int
	applyFn func() error
	log     bytes.Buffer
}

func newGossipEnv(t *testing.T) *gossipEnv {
	st, old := gossipState(t)
	return &gossipEnv{st: st, old: old, f: newFakeCluster(old, "n1", "n2", "n3")}
}

func (e *gossipEnv) opts() GossipOptions {
	return GossipOptions{
		State:    e.st,
		Agent:    e.f,
		Expected: threeNodes,
		Apply: func(context.Context) error {
			e.applies++
			if e.applyFn != nil {
				return e.applyFn()
			}
			return nil
		},
		Wait: 60 * time.Millisecond,
		Poll: 5 * time.Millisecond,
		Log:  &e.log,
	}
}

func (e *gossipEnv) keyring(t *testing.T) *ca.Keyring {
	t.Helper()
	kr, err := e.st.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// checkRotated asserts that every member holds only the new key, as
// primary, and that the state records it with the old key as previous.
func (e *gossipEnv) checkRotated(t *testing.T) {
	t.Helper()
	kr := e.keyring(t)
	if kr.Primary == e.old || kr.Pending != "" || len(kr.Previous) != 1 || kr.Previous[0] != e.old {
		t.Errorf("state keyring: primary is old=%v, pending set=%v, previous=%d", kr.Primary == e.old, kr.Pending != "", len(kr.Previous))
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		keys, primary := e.f.keysOf(n)
		if len(keys) != 1 || keys[0] != kr.Primary || primary != kr.Primary {
			t.Errorf("member %s: %d keys, primary is new=%v", n, len(keys), primary == kr.Primary)
		}
	}
	if _, err := os.Stat(e.st.RotationFile(ca.GossipRotation)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("progress file left behind: %v", err)
	}
}

func noSecret(t *testing.T, s string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if k != "" && strings.Contains(s, k) {
			t.Errorf("output shows a gossip key: %q", s)
		}
	}
}

func TestGossipSuccess(t *testing.T) {
	for _, tc := range []struct {
		name          string
		reportPrimary bool
	}{
		{"consul 1.6 (no primary keys)", false},
		{"consul 1.11+ (primary keys)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGossipEnv(t)
			e.f.reportPrimary = tc.reportPrimary
			res, err := Gossip(context.Background(), e.opts())
			if err != nil {
				t.Fatal(err)
			}
			e.checkRotated(t)
			if e.applies != 1 {
				t.Errorf("apply ran %d times, want 1", e.applies)
			}
			if res.Old != ca.GossipFingerprint(e.old) || res.New != ca.GossipFingerprint(e.keyring(t).Primary) || res.ResumedAt != "" {
				t.Errorf("result %+v", res)
			}
			if len(res.Steps) != 4 || len(res.Pools) != 2 {
				t.Errorf("steps %v, pools %v", res.Steps, res.Pools)
			}
			noSecret(t, e.log.String(), e.old, e.keyring(t).Primary)
			if !tc.reportPrimary && !strings.Contains(e.log.String(), "remove step verifies") {
				t.Error("log does not say primaries are verified by remove")
			}
		})
	}
}

// TestGossipNodeDown is the fault of the issue: a member down during install
// stops the rotation before use, with the old key still primary, naming the
// member; once it is back, a re-run resumes and completes.
// Members that answer a keyring query late make Consul fail the whole call;
// the rotation repeats the (idempotent) operation instead of stopping.
func TestGossipRetriesPartialAnswers(t *testing.T) {
	e := newGossipEnv(t)
	for _, op := range []string{"install", "list", "use", "remove"} {
		e.f.partial[op] = 1
	}
	if _, err := Gossip(context.Background(), e.opts()); err != nil {
		t.Fatalf("rotation with late answers: %v", err)
	}
	e.checkRotated(t)
	for _, op := range []string{"use", "remove"} {
		if e.f.calls[op] < 2 {
			t.Errorf("%s was called %d time(s); want a retry after the partial answer", op, e.f.calls[op])
		}
	}
}

func TestGossipNodeDown(t *testing.T) {
	e := newGossipEnv(t)
	e.f.setAlive("n3", false)
	_, err := Gossip(context.Background(), e.opts())
	var ge *GossipError
	if !errors.As(err, &ge) || ge.Step != StepInstall || !errors.Is(err, ErrNotEveryMember) {
		t.Fatalf("error %v, want a GossipError at install wrapping ErrNotEveryMember", err)
	}
	msg := err.Error()
	for _, want := range []string{"n3 (LAN, failed)", "n3.dc1 (WAN, failed)", "dc1 LAN", "2/3", "old key " + ge.Old + " is still primary", "re-run `mtlsctl rotate gossip`"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	kr := e.keyring(t)
	noSecret(t, msg, e.old, kr.Pending)
	if e.f.calls["use"] != 0 || e.f.calls["remove"] != 0 || e.applies != 0 {
		t.Errorf("went past install: use %d, remove %d, apply %d", e.f.calls["use"], e.f.calls["remove"], e.applies)
	}
	for _, n := range []string{"n1", "n2"} {
		if _, primary := e.f.keysOf(n); primary != e.old {
			t.Errorf("%s: old key no longer primary", n)
		}
	}
	if kr.Primary != e.old || kr.Pending == "" {
		t.Error("state: the old key must stay primary with the new key pending")
	}
	if step, _ := GossipInProgress(e.st); step != StepInstall {
		t.Errorf("recorded step %q, want install", step)
	}

	// The node comes back (with the old key only); the re-run resumes.
	pending := kr.Pending
	e.f.setAlive("n3", true)
	res, err := Gossip(context.Background(), e.opts())
	if err != nil {
		t.Fatal(err)
	}
	if res.ResumedAt != StepInstall || e.keyring(t).Primary != pending {
		t.Errorf("resumed at %q; the pending key must become primary", res.ResumedAt)
	}
	e.checkRotated(t)
}

// TestGossipFailureAndResume makes each step fail once: the rotation stops
// at that step, records it, and a re-run resumes there and completes.
func TestGossipFailureAndResume(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inject   func(e *gossipEnv)
		wantStep string
		wantErr  error
		// oldPrimary: the members' primary must still be the old key.
		oldPrimary bool
	}{
		{"install refused", func(e *gossipEnv) { e.f.fail["install"] = 0 }, StepInstall, ErrNotEveryMember, true},
		{"list fails", func(e *gossipEnv) { e.f.fail["list"] = 0 }, StepInstall, ErrNotEveryMember, true},
		{"members fails", func(e *gossipEnv) { e.f.fail["members"] = 0 }, StepInstall, ErrNotEveryMember, true},
		{"use fails", func(e *gossipEnv) { e.f.fail["use"] = 0 }, StepUse, errInjected, true},
		{"remove fails", func(e *gossipEnv) { e.f.fail["remove"] = 0 }, StepRemove, errInjected, false},
		{"apply fails", func(e *gossipEnv) { e.applyFn = func() error { return errInjected } }, StepConfig, errInjected, false},
		{"member keeps old primary (1.6: remove refuses)", func(e *gossipEnv) { e.f.member("n2").stubborn = true }, StepRemove, nil, false},
		{"member keeps old primary (1.11: use verifies)", func(e *gossipEnv) {
			e.f.reportPrimary = true
			e.f.member("n2").stubborn = true
		}, StepUse, ErrNotPrimary, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGossipEnv(t)
			tc.inject(e)
			_, err := Gossip(context.Background(), e.opts())
			var ge *GossipError
			if !errors.As(err, &ge) || ge.Step != tc.wantStep {
				t.Fatalf("error %v, want a GossipError at step %s", err, tc.wantStep)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tc.wantErr)
			}
			kr := e.keyring(t)
			noSecret(t, err.Error(), e.old, kr.Pending, kr.Primary)
			if !strings.Contains(err.Error(), "resumes at step \""+tc.wantStep+"\"") {
				t.Errorf("error does not say how to resume:\n%v", err)
			}
			if step, _ := GossipInProgress(e.st); step != tc.wantStep {
				t.Errorf("recorded step %q, want %q", step, tc.wantStep)
			}
			if _, primary := e.f.keysOf("n1"); (primary == e.old) != tc.oldPrimary {
				t.Errorf("n1's primary is the old key: %v, want %v", primary == e.old, tc.oldPrimary)
			}
			if tc.wantStep == StepConfig && kr.Primary == e.old {
				t.Error("config step: the state should already record the new primary")
			}

			// Clear the fault and resume.
			e.f.fail = map[string]int{}
			e.f.member("n2").stubborn = false
			e.applyFn = nil
			res, err := Gossip(context.Background(), e.opts())
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if res.ResumedAt != tc.wantStep {
				t.Errorf("resumed at %q, want %q", res.ResumedAt, tc.wantStep)
			}
			e.checkRotated(t)
		})
	}
}

func TestGossipMemberNeverJoined(t *testing.T) {
	e := newGossipEnv(t)
	o := e.opts()
	o.Expected = Expected{LAN: map[string][]string{"dc1": {"n1", "n2", "n3", "n4"}}, WAN: threeNodes.WAN}
	_, err := Gossip(context.Background(), o)
	if !errors.Is(err, ErrNotEveryMember) || !strings.Contains(err.Error(), "n4 (LAN, not a member)") || !strings.Contains(err.Error(), "3/4") {
		t.Fatalf("error %v, want n4 named as not a member", err)
	}
}

func TestGossipResumeChecks(t *testing.T) {
	t.Run("interrupted before the step was recorded", func(t *testing.T) {
		e := newGossipEnv(t)
		pending, _ := ca.NewGossipKey(nil)
		if err := e.st.SetKeyring(&ca.Keyring{Primary: e.old, Pending: pending}); err != nil {
			t.Fatal(err)
		}
		res, err := Gossip(context.Background(), e.opts())
		if err != nil {
			t.Fatal(err)
		}
		if res.ResumedAt != StepInstall || e.keyring(t).Primary != pending {
			t.Error("the pending key was not the one rotated in")
		}
		e.checkRotated(t)
	})
	t.Run("interrupted after the state recorded the new primary", func(t *testing.T) {
		e := newGossipEnv(t)
		e.applyFn = func() error { return errInjected }
		if _, err := Gossip(context.Background(), e.opts()); err == nil {
			t.Fatal("no error")
		}
		// Rewind the progress file to "remove", as if the process died
		// between the keyring write and the progress write.
		path := e.st.RotationFile(ca.GossipRotation)
		data, _ := os.ReadFile(path)
		if err := os.WriteFile(path, bytes.Replace(data, []byte(`"config"`), []byte(`"remove"`), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		e.applyFn = nil
		if _, err := Gossip(context.Background(), e.opts()); err != nil {
			t.Fatal(err)
		}
		if e.f.calls["remove"] != 1 {
			t.Errorf("remove ran %d times, want 1 (resume should skip to config)", e.f.calls["remove"])
		}
		e.checkRotated(t)
	})
	for _, tc := range []struct {
		name    string
		content string
		want    error
	}{
		{"other keys", `{"step":"use","old_fingerprint":"sha256:0000000000000000","new_fingerprint":"sha256:1111111111111111"}`, ErrProgressMismatch},
		{"unknown step", `{"step":"dance"}`, ErrProgressMismatch},
		{"not json", `{`, ca.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGossipEnv(t)
			if err := os.WriteFile(e.st.RotationFile(ca.GossipRotation), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Gossip(context.Background(), e.opts()); !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if e.f.calls["install"] != 0 {
				t.Error("the cluster was touched")
			}
		})
	}
}

func TestProgressFileMode(t *testing.T) {
	e := newGossipEnv(t)
	e.f.fail["use"] = 0
	_, _ = Gossip(context.Background(), e.opts())
	fi, err := os.Stat(e.st.RotationFile(ca.GossipRotation))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(e.st.RotationFile(ca.GossipRotation))
	noSecret(t, string(data), e.old, e.keyring(t).Pending)
}

func TestQueryTimeout(t *testing.T) {
	for _, tc := range []struct {
		n        int
		interval time.Duration
		want     time.Duration
	}{
		{0, 0, 3200 * time.Millisecond}, {3, 0, 3200 * time.Millisecond}, {9, 0, 3200 * time.Millisecond},
		{10, 0, 6400 * time.Millisecond}, {50, 0, 6400 * time.Millisecond}, {99, 0, 6400 * time.Millisecond},
		{200, 0, 9600 * time.Millisecond}, {1000, 0, 12800 * time.Millisecond},
		{3, WANGossipInterval, 8 * time.Second}, {12, WANGossipInterval, 16 * time.Second},
	} {
		if got := QueryTimeout(tc.n, tc.interval); got != tc.want {
			t.Errorf("QueryTimeout(%d, %v) = %v, want %v", tc.n, tc.interval, got, tc.want)
		}
	}
	if got := threeNodes.opTimeout(); got != 8*time.Second+3200*time.Millisecond+5*time.Second {
		t.Errorf("opTimeout of 3 nodes = %v", got)
	}
}
