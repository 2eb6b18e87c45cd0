package rotate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/inventory"
)

func caTopology() *inventory.Topology {
	cl := &inventory.Cluster{Name: "test", Consul: inventory.Consul{Domain: "consul"}, Datacenters: []inventory.Datacenter{{Name: "dc-1"}}}
	t := &inventory.Topology{Cluster: cl}
	for i := range 4 {
		comps := []inventory.Component{inventory.Router}
		if i < 3 {
			comps = []inventory.Component{inventory.ZooKeeper}
		}
		n := &inventory.Node{Name: fmt.Sprintf("n%d", i+1), Address: fmt.Sprintf("10.0.0.%d", i+1), Components: comps, Datacenter: "dc-1"}
		t.Nodes = append(t.Nodes, n)
		cl.Datacenters[0].Nodes = append(cl.Datacenters[0].Nodes, n)
	}
	return t
}

// pushed is what a fake apply saw: the bundle's CA count and how many
// leaves the old and the new CA signed.
type pushed struct {
	phase                string
	bundleCAs            int
	oldLeaves, newLeaves int
}

type caEnv struct {
	st      *ca.State
	topo    *inventory.Topology
	old     *ca.CA
	pushes  []pushed
	failOn  map[string]error // phase → verify error
	applyOn map[string]error // phase → apply error
}

func newCAEnv(t *testing.T) *caEnv {
	t.Helper()
	st, err := ca.Open(filepath.Join(t.TempDir(), "state"), ca.OpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	topo := caTopology()
	if _, err := st.Generate(topo, ca.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	old, err := st.LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	return &caEnv{st: st, topo: topo, old: old, failOn: map[string]error{}, applyOn: map[string]error{}}
}

func (e *caEnv) opts(t *testing.T) CAOptions {
	return CAOptions{
		State:    e.st,
		Topology: e.topo,
		Apply: func(_ context.Context, phase string) error {
			if err := e.applyOn[phase]; err != nil {
				return err
			}
			// What a real apply would push: the state's credentials.
			cr, err := e.st.Credentials(e.topo)
			if err != nil {
				return err
			}
			p := pushed{phase: phase, bundleCAs: strings.Count(string(cr.CABundlePEM), "BEGIN CERTIFICATE")}
			for _, l := range cr.Leaves {
				if l.Cert.CheckSignatureFrom(e.old.Cert) == nil {
					p.oldLeaves++
				} else {
					p.newLeaves++
				}
			}
			e.pushes = append(e.pushes, p)
			return nil
		},
		Verify: func(_ context.Context, phase string) error { return e.failOn[phase] },
	}
}

var wantPushes = map[string]pushed{
	PhaseTrust:   {PhaseTrust, 2, 4, 0},
	PhaseReissue: {PhaseReissue, 2, 0, 4},
	PhaseDrop:    {PhaseDrop, 1, 0, 4},
}

func (e *caEnv) checkDone(t *testing.T, res *CAResult) {
	t.Helper()
	cur, err := e.st.LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	if res.Old != e.old.Fingerprint() || res.New != cur.Fingerprint() || res.New == res.Old {
		t.Errorf("result old/new wrong")
	}
	if trusted, _ := e.st.TrustedCAs(); len(trusted) != 0 {
		t.Errorf("%d CA(s) still trusted", len(trusted))
	}
	if m, _ := filepath.Glob(filepath.Join(e.st.Dir(), "ca", "archive", "*", "consul-agent-ca-key.pem")); len(m) != 1 {
		t.Errorf("old CA key not archived: %v", m)
	}
	if _, err := os.Stat(e.st.RotationFile(ca.CARotation)); !errors.Is(err, os.ErrNotExist) {
		t.Error("progress file left behind")
	}
	last := map[string]pushed{}
	for _, p := range e.pushes {
		last[p.phase] = p
	}
	for phase, want := range wantPushes {
		if last[phase] != want {
			t.Errorf("phase %s pushed %+v, want %+v", phase, last[phase], want)
		}
	}
}

func TestRotateCA(t *testing.T) {
	e := newCAEnv(t)
	res, err := RotateCA(context.Background(), e.opts(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.pushes) != 3 || len(res.Phases) != 4 {
		t.Errorf("pushes %v, phases %v", e.pushes, res.Phases)
	}
	e.checkDone(t, res)
}

func TestRotateCAFailureAndResume(t *testing.T) {
	boom := errors.New("agent n2 serves the old certificate")
	for _, phase := range []string{PhaseTrust, PhaseReissue, PhaseDrop} {
		for _, where := range []string{"apply", "verify"} {
			t.Run(phase+" "+where, func(t *testing.T) {
				e := newCAEnv(t)
				if where == "apply" {
					e.applyOn[phase] = boom
				} else {
					e.failOn[phase] = boom
				}
				_, err := RotateCA(context.Background(), e.opts(t))
				var ce *CAError
				if !errors.As(err, &ce) || ce.Phase != phase || !errors.Is(err, boom) {
					t.Fatalf("error %v, want a CAError at %s", err, phase)
				}
				if !strings.Contains(err.Error(), "re-run `mtlsctl rotate ca`") || !strings.Contains(err.Error(), where+":") {
					t.Errorf("error does not say where and how to resume:\n%v", err)
				}
				if got, _ := CAInProgress(e.st); got != phase {
					t.Errorf("recorded phase %q, want %q", got, phase)
				}
				// No phase past the failed one was pushed.
				for _, p := range e.pushes {
					if p.phase != phase && !(phase == PhaseReissue && p.phase == PhaseTrust) && !(phase == PhaseDrop && p.phase != PhaseDrop) {
						t.Errorf("pushed phase %s after a failure at %s", p.phase, phase)
					}
				}
				delete(e.applyOn, phase)
				delete(e.failOn, phase)
				res, err := RotateCA(context.Background(), e.opts(t))
				if err != nil {
					t.Fatalf("resume: %v", err)
				}
				if res.ResumedAt != phase {
					t.Errorf("resumed at %q, want %q", res.ResumedAt, phase)
				}
				e.checkDone(t, res)
			})
		}
	}
}

func TestRotateCAResumeChecks(t *testing.T) {
	t.Run("interrupted create", func(t *testing.T) {
		// The progress file says create, and the CA was already rotated:
		// the resume must not make a third CA.
		e := newCAEnv(t)
		if err := saveProgress(e.st, ca.CARotation, caProgress{Phase: PhaseCreate, Old: e.old.Fingerprint()}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.st.RotateCA(ca.CAOptions{}); err != nil {
			t.Fatal(err)
		}
		mid, _ := e.st.LoadCA()
		res, err := RotateCA(context.Background(), e.opts(t))
		if err != nil {
			t.Fatal(err)
		}
		if res.New != mid.Fingerprint() {
			t.Error("resume made another CA")
		}
		e.checkDone(t, res)
	})
	t.Run("other CA", func(t *testing.T) {
		e := newCAEnv(t)
		if err := saveProgress(e.st, ca.CARotation, caProgress{Phase: PhaseReissue, Old: "AA", New: "BB"}); err != nil {
			t.Fatal(err)
		}
		if _, err := RotateCA(context.Background(), e.opts(t)); !errors.Is(err, ErrProgressMismatch) {
			t.Errorf("error %v, want ErrProgressMismatch", err)
		}
		if len(e.pushes) != 0 {
			t.Error("pushed despite the mismatch")
		}
	})
}

func TestVerifyServed(t *testing.T) {
	want := map[string]string{"n1": "sha256:aa", "n2": "sha256:bb", "n3": "sha256:cc"}
	for _, tc := range []struct {
		name   string
		served map[string]string
		bad    []string
	}{
		{"all new", map[string]string{"n1": "sha256:aa", "n2": "sha256:BB", "n3": "sha256:cc"}, nil},
		{"one old", map[string]string{"n1": "sha256:aa", "n2": "sha256:00", "n3": "sha256:cc"}, []string{"n2"}},
		{"one unread", map[string]string{"n1": "sha256:aa", "n3": "sha256:cc"}, []string{"n2"}},
		{"none", nil, []string{"n1", "n2", "n3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyServed(want, tc.served)
			if len(tc.bad) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrNotServed) {
				t.Fatalf("error %v, want ErrNotServed", err)
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var se *ServedError
				if errors.As(e, &se) {
					got = append(got, se.Node)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.bad, ",") {
				t.Errorf("nodes %v, want %v", got, tc.bad)
			}
		})
	}
}
