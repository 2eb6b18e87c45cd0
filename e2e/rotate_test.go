// Rotation tests: `rotate gossip`, `rotate certs` and `rotate ca` on a live
// 5-node Consul 1.6.2 cluster (3 servers, 2 clients), each run while a probe
// writes and reads a KV key through a client agent and checks the members
// every 100 ms. Zero downtime means zero failed probe operations and no
// member ever leaving "alive".

package e2e

import (
	"context"
	"errors"
	"fmt"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/internal/app"
	"github.com/mtlsctl/mtlsctl/internal/rotate"
)

// rtProbe is the zero-downtime probe: KV write+read and members, every 100 ms.
type rtProbe struct {
	mu       sync.Mutex
	ops      int
	failures []string
	stop     chan struct{}
	done     chan struct{}
}

func rtStartProbe(t *testing.T, c *api.Client, key string, members int) *rtProbe {
	t.Helper()
	p := &rtProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			p.once(c, key, strconv.Itoa(i), members)
		}
	}()
	return p
}

func (p *rtProbe) once(c *api.Client, key, val string, members int) {
	fail := func(format string, a ...any) {
		p.mu.Lock()
		p.failures = append(p.failures, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, a...))
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.ops++
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte(val)}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		fail("kv put: %v", err)
		return
	}
	kv, _, err := c.KV().Get(key, q)
	switch {
	case err != nil:
		fail("kv get: %v", err)
		return
	case kv == nil || string(kv.Value) != val:
		fail("kv get: read back something else than was written")
		return
	}
	ms, err := c.Agent().Members(false)
	if err != nil {
		fail("members: %v", err)
		return
	}
	alive := 0
	for _, m := range ms {
		if m.Status == 1 {
			alive++
		} else {
			fail("member %s is %d, not alive", m.Name, m.Status)
		}
	}
	if alive != members {
		fail("%d members alive, want %d", alive, members)
	}
}

// finish stops the probe and returns its operation count and failures.
func (p *rtProbe) finish() (int, []string) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ops, p.failures
}

// lcProbeToken makes a token for the probe with the management token: KV
// under mtlsctl/probe/ and node names, nothing else.
func lcProbeToken(t *testing.T, ctx context.Context, cl *consulapi.Cluster, via string) string {
	t.Helper()
	api1, err := cl.API(ctx, via)
	if err != nil {
		t.Fatal(err)
	}
	wo := (&api.WriteOptions{}).WithContext(ctx)
	pol, _, err := api1.ACL().PolicyCreate(&api.ACLPolicy{Name: "e2e-probe",
		Rules: "key_prefix \"mtlsctl/probe/\" {\n  policy = \"write\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\n"}, wo)
	if err != nil {
		t.Fatalf("probe policy: %v", err)
	}
	tok, _, err := api1.ACL().TokenCreate(&api.ACLToken{Description: "e2e probe", Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, wo)
	if err != nil {
		t.Fatalf("probe token: %v", err)
	}
	return tok.SecretID
}

// lcLocalUserDenied checks, on a real node, that a local user other than
// root (nobody) gets nothing from the agent's HTTP API that matters: not
// the gossip keyring, not a Connect leaf certificate, not a second ACL
// bootstrap; while the anonymous token still answers what DNS needs.
func lcLocalUserDenied(t *testing.T, ctx context.Context, lc *lcCluster, node string) {
	t.Helper()
	nd := lc.net.Node(node)
	as := func(method, path string) (string, string) {
		out, err := nd.Exec(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"curl", "-s", "-X", method, "-w", "\n%{http_code}", "http://127.0.0.1:8500"+path)
		if err != nil {
			t.Fatalf("%s: curl %s as nobody: %v: %s", node, path, err, out)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndex(s, "\n")
		if i < 0 {
			return s, ""
		}
		return s[i+1:], s[:i]
	}
	// 1.6.2 answers a keyring read denied by ACLs with a 500 whose body
	// says so; the other endpoints with a 403.
	for _, c := range []struct{ method, path, what string }{
		{"GET", "/v1/operator/keyring", "the gossip keyring"},
		{"GET", "/v1/agent/connect/ca/leaf/zk-2181-" + strings.ReplaceAll(lc.net.Node("n1").Addr, ".", "-"), "a Connect leaf for n1's ZooKeeper"},
		{"PUT", "/v1/acl/bootstrap", "a second ACL bootstrap"},
		{"GET", "/v1/acl/tokens", "the token list"},
	} {
		code, body := as(c.method, c.path)
		// A client agent has no keyring to give ("must run against a
		// server node"): refused as well.
		// A 1.6.2 client agent that has not yet seen its servers leave
		// legacy ACL mode refuses a bootstrap with a 500 saying so.
		denied := code == "403" || strings.Contains(body, "denied") || strings.Contains(body, "no longer allowed") || strings.Contains(body, "must run against a server") ||
			(c.path == "/v1/acl/bootstrap" && strings.Contains(body, "currently in legacy mode"))
		if !denied || strings.Contains(body, "SecretID") || strings.Contains(body, "PrivateKeyPEM") || strings.Contains(body, "Keys") {
			t.Errorf("%s: nobody asked for %s (%s %s): HTTP %s, want it refused: %s", node, c.what, c.method, c.path, code, lcTail(body, 3))
		} else {
			t.Logf("%s: nobody asked for %s: HTTP %s (%s)", node, c.what, code, lcTail(body, 1))
		}
	}
	if code, _ := as("GET", "/v1/catalog/nodes"); code != "200" {
		t.Errorf("%s: the anonymous token cannot list nodes (HTTP %s): DNS lookups would fail", node, code)
	}
}

func TestRotations162(t *testing.T) {
	lc := lcStart(t, lcSpec{version: "1.6.2", subnet: "198.18.40.0/24", prefix: "rt", nodes: lcFiveNodes()})
	lcCheckHealth(t, lc.Health, map[string]int{"dc-1": 3}, 5)
	if t.Failed() {
		return
	}
	cl := lc.dial(transport.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The probe is an application with a token of its own (KV under its
	// prefix, node names for members): it must keep working while mtlsctl
	// replaces every token it made, the management token included.
	probeTok := lcProbeToken(t, ctx, cl, "n1")
	client, err := lc.dialToken(transport.Options{}, probeTok).API(ctx, "n4") // a client agent, as Apigee's components use it
	if err != nil {
		t.Fatal(err)
	}
	lcLocalUserDenied(t, ctx, lc, "n1")
	// The mesh must stay up through every rotation: a router (n2) calls
	// ZooKeeper on n1 and Postgres (n4) calls Cassandra on n3, through the
	// proxies, every 100 ms.
	servers := meshServers(t, lc, lcFiveNodes())
	_ = servers
	zk := net.JoinHostPort(lc.net.Node("n1").Addr, "2181")
	cs := net.JoinHostPort(lc.net.Node("n3").Addr, "9042")
	for _, tc := range []struct {
		name string
		run  func(context.Context, app.Common, app.DistOptions, app.RotateOptions) error
		// proxies: the rotation restarts every proxy (on its new token).
		proxies bool
	}{
		{"gossip", app.RotateGossip, false},
		{"certs", app.RotateCerts, false},
		{"ca", app.RotateCA, false},
		{"tokens", app.RotateTokens, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pids := map[string]int{}
			for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
				pids[n] = lc.servicePID(n)
			}
			proxies := lcProxyPIDs(lc)
			p := rtStartProbe(t, client, "mtlsctl/probe/"+tc.name, 5)
			m1, m2 := startMeshProbe(lc, "n2", zk), startMeshProbe(lc, "n4", cs)
			time.Sleep(300 * time.Millisecond) // a few probes before the rotation starts
			start := time.Now()
			err := tc.run(ctx, lc.common, lc.dist, app.RotateOptions{Yes: true})
			took := time.Since(start)
			time.Sleep(300 * time.Millisecond)
			ops, failures := p.finish()
			t.Logf("rotate %s: %s; probe: %d operations (KV write+read+members every 100 ms), %d failed", tc.name, took.Round(time.Millisecond), ops, len(failures))
			for _, m := range []*meshProbe{m1, m2} {
				mops, mfail := m.finish()
				t.Logf("rotate %s: mesh probe: %d connections through the proxies, %d failed", tc.name, mops, len(mfail))
				for _, f := range mfail {
					t.Errorf("mesh probe: %s", f)
				}
			}
			if err != nil {
				t.Fatalf("rotate %s: %v", tc.name, err)
			}
			for _, f := range failures {
				t.Errorf("probe: %s", f)
			}
			for n, pid := range pids {
				if now := lc.servicePID(n); now != pid {
					t.Errorf("%s: agent restarted (pid %d -> %d); a rotation must only reload", n, pid, now)
				}
			}
			for unit, pid := range lcProxyPIDs(lc) {
				switch {
				case !tc.proxies && proxies[unit] != pid:
					t.Errorf("%s: proxy restarted (pid %d -> %d); a rotation must not touch the proxies", unit, proxies[unit], pid)
				case tc.proxies && proxies[unit] == pid:
					t.Errorf("%s: proxy not restarted (pid %d): it still runs on its old token", unit, pid)
				}
			}
			if tc.name == "tokens" {
				lcLocalUserDenied(t, ctx, lc, "n1")
			}
			h, err := app.VerifyCluster(ctx, lc.common, lc.dist)
			if err != nil {
				t.Fatalf("after rotate %s: %v", tc.name, err)
			}
			lcCheckHealth(t, h, map[string]int{"dc-1": 3}, 5)
		})
	}

	// The fault: a node down during `rotate gossip` stops the rotation
	// before `use`, names the node and leaves the old key primary; once the
	// node is back, a re-run resumes and completes.
	t.Run("gossip with a node down", func(t *testing.T) {
		// A fresh handle: rotate tokens replaced the management token.
		cl := lc.dial(transport.Options{})
		if _, err := lc.net.Node("n5").Exec(ctx, "systemctl", "stop", "consul"); err != nil {
			t.Fatal(err)
		}
		st, err := ca.Open(lc.common.State, ca.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before, _ := st.Keyring()
		start := time.Now()
		err = app.RotateGossip(ctx, lc.common, lc.dist, app.RotateOptions{Yes: true, GossipWait: 10 * time.Second})
		t.Logf("stopped after %s: %v", time.Since(start).Round(time.Millisecond), err)
		var ge *rotate.GossipError
		if !errors.As(err, &ge) || ge.Step != rotate.StepInstall || !strings.Contains(err.Error(), "n5") {
			t.Fatalf("error %v, want a stop at install naming n5", err)
		}
		mid, _ := st.Keyring()
		if mid.Primary != before.Primary || mid.Pending == "" {
			t.Error("the state's primary key changed, or no key is pending")
		}
		h, err := cl.Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range h.Keyring {
			if k := p.Key(fingerprint.Gossip(before.Primary)); k == nil || k.Nodes != p.NumNodes {
				t.Errorf("pool %s/%v: old key not on every live member: %+v", p.Datacenter, p.WAN, p.Keys)
			}
		}
		if _, err := lc.net.Node("n5").Exec(ctx, "systemctl", "start", "consul"); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer wcancel()
		if _, err := cl.WaitHealthy(wctx, consulapi.Want{}); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		if err := app.RotateGossip(ctx, lc.common, lc.dist, app.RotateOptions{Yes: true}); err != nil {
			t.Fatalf("resume: %v", err)
		}
		t.Logf("resumed rotation: %s", time.Since(start).Round(time.Millisecond))
		after, _ := st.Keyring()
		if after.Primary != mid.Pending || after.Pending != "" {
			t.Error("the pending key did not become primary")
		}
		h, err = app.VerifyCluster(ctx, lc.common, lc.dist)
		if err != nil {
			t.Fatal(err)
		}
		lcCheckHealth(t, h, map[string]int{"dc-1": 3}, 5)
	})
}
