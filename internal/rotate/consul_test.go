package rotate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/consultest"
)

// freePorts returns n consecutive ports in a high range that are free on
// 127.0.0.1 for both TCP and UDP (Serf gossips over both).
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 30000 + rand.IntN(20000)
		ok := true
		for p := base; p < base+n && ok; p++ {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			u, err := net.ListenPacket("udp", addr)
			l.Close()
			if err != nil {
				ok = false
				break
			}
			u.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range on 127.0.0.1")
	return 0
}

// loopAgent is one real Consul server agent on loopback.
type loopAgent struct {
	name    string
	dir     string // data dir
	config  string
	http    int
	serfLAN int
	cmd     *exec.Cmd
	log     *os.File
}

// loopCluster is a cluster of Consul 1.6.2 servers on 127.0.0.1, each on
// its own ports, started and stopped by PID.
type loopCluster struct {
	t      *testing.T
	bin    string
	agents []*loopAgent
}

func startLoopCluster(t *testing.T, n int, key string) *loopCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("real Consul agents: skipped with -short")
	}
	c := &loopCluster{t: t, bin: consultest.Binary(t, "1.6.2")}
	const per = 4 // http, serf_lan, serf_wan, server
	base := freePorts(t, n*per)
	root := t.TempDir()
	for i := range n {
		a := &loopAgent{name: fmt.Sprintf("n%d", i+1), dir: filepath.Join(root, fmt.Sprintf("n%d", i+1)), http: base + i*per, serfLAN: base + i*per + 1}
		if err := os.MkdirAll(filepath.Join(a.dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		c.agents = append(c.agents, a)
	}
	for i, a := range c.agents {
		var join []string
		for j, b := range c.agents {
			if j != i {
				join = append(join, fmt.Sprintf("127.0.0.1:%d", b.serfLAN))
			}
		}
		cfg := map[string]any{
			"node_name":            a.name,
			"datacenter":           "dc1",
			"server":               true,
			"bootstrap_expect":     n,
			"data_dir":             filepath.Join(a.dir, "data"),
			"bind_addr":            "127.0.0.1",
			"client_addr":          "127.0.0.1",
			"retry_join":           join,
			"retry_interval":       "1s",
			"encrypt":              key,
			"disable_update_check": true,
			"log_level":            "info",
			"ports":                map[string]int{"http": a.http, "serf_lan": a.serfLAN, "serf_wan": base + i*per + 2, "server": base + i*per + 3, "dns": -1},
			"performance":          map[string]int{"raft_multiplier": 1},
		}
		data, _ := json.MarshalIndent(cfg, "", "  ")
		a.config = filepath.Join(a.dir, "agent.json")
		if err := os.WriteFile(a.config, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.stopAll)
	for _, a := range c.agents {
		c.start(a)
	}
	c.waitMembers(60*time.Second, n)
	return c
}

func (c *loopCluster) start(a *loopAgent) {
	c.t.Helper()
	log, err := os.OpenFile(filepath.Join(a.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "agent", "-config-file", a.config)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		c.t.Fatalf("start %s: %v", a.name, err)
	}
	a.cmd, a.log = cmd, log
}

// stop kills one agent by its PID (a crash: no leave).
func (c *loopCluster) stop(a *loopAgent) {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Kill()
	_ = a.cmd.Wait()
	a.log.Close()
	a.cmd = nil
}

func (c *loopCluster) stopAll() {
	for _, a := range c.agents {
		c.stop(a)
	}
	if c.t.Failed() {
		for _, a := range c.agents {
			data, _ := os.ReadFile(filepath.Join(a.dir, "agent.log"))
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			c.t.Logf("agent %s log (last lines):\n%s", a.name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
	}
}

func (c *loopCluster) client(a *loopAgent) *api.Client {
	c.t.Helper()
	cl, err := api.NewClient(&api.Config{Address: fmt.Sprintf("127.0.0.1:%d", a.http)})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// waitMembers waits until the first agent sees want alive members in the
// LAN and in the WAN pool, and a leader.
func (c *loopCluster) waitMembers(timeout time.Duration, want int) {
	c.t.Helper()
	cl := c.client(c.agents[0])
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		alive := func(wan bool) int {
			ms, err := cl.Agent().Members(wan)
			if err != nil {
				last = err.Error()
				return 0
			}
			k := 0
			for _, m := range ms {
				if m.Status == 1 {
					k++
				}
			}
			return k
		}
		lan, wan := alive(false), alive(true)
		leader, _ := cl.Status().Leader()
		if lan == want && wan == want && leader != "" {
			return
		}
		last = fmt.Sprintf("LAN %d alive, WAN %d alive, leader %q", lan, wan, leader)
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("cluster not ready after %s: %s", timeout, last)
}

// diskKeyring reads the keyring an agent persisted (primary first).
func diskKeyring(t *testing.T, a *loopAgent, pool string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(a.dir, "data", "serf", pool+".keyring"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := json.Unmarshal(data, &keys); err != nil {
		t.Fatalf("%s %s.keyring: not JSON", a.name, pool)
	}
	return keys
}

// fps fingerprints keys for messages.
func fps(keys []string) string {
	var out []string
	for _, k := range keys {
		out = append(out, ca.GossipFingerprint(k))
	}
	return strings.Join(out, ",")
}

func loopExpected(n int) Expected {
	e := Expected{LAN: map[string][]string{}}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		e.LAN["dc1"] = append(e.LAN["dc1"], name)
		e.WAN = append(e.WAN, name+".dc1")
	}
	return e
}

func TestLoopbackGossipRotation(t *testing.T) {
	st, old := gossipState(t)
	c := startLoopCluster(t, 3, old)
	var log bytes.Buffer
	applies := 0
	t0 := time.Now()
	res, err := Gossip(context.Background(), GossipOptions{
		State:    st,
		Agent:    &Client{API: c.client(c.agents[0])},
		Expected: loopExpected(3),
		Apply:    func(context.Context) error { applies++; return nil },
		Poll:     200 * time.Millisecond,
		Log:      &log,
	})
	took := time.Since(t0)
	t.Logf("rotation log:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := st.Keyring()
	noSecret(t, log.String(), old, kr.Primary)
	t.Logf("gossip rotation on 3 loopback Consul 1.6.2 servers: %s (steps %v)", took.Round(time.Millisecond), res.Steps)
	if applies != 1 {
		t.Errorf("apply ran %d times", applies)
	}
	for _, a := range c.agents {
		for _, pool := range []string{"local", "remote"} {
			if keys := diskKeyring(t, a, pool); len(keys) != 1 || keys[0] != kr.Primary {
				t.Errorf("%s %s keyring: %s, want only the new key %s", a.name, pool, fps(keys), ca.GossipFingerprint(kr.Primary))
			}
		}
	}
	resp, err := c.client(c.agents[1]).Operator().KeyringList(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pools(resp, loopExpected(3)) {
		if len(p.Keys) != 1 || p.Keys[ca.GossipFingerprint(kr.Primary)] != 3 || p.NumNodes != 3 {
			t.Errorf("after rotation: %s (num_nodes %d)", p, p.NumNodes)
		}
	}
	// The cluster still works on the new key: a write through another agent.
	if _, err := c.client(c.agents[2]).KV().Put(&api.KVPair{Key: "mtlsctl/probe", Value: []byte("ok")}, nil); err != nil {
		t.Errorf("KV write after rotation: %v", err)
	}
}

// TestLoopbackGossipNodeDown: with one server down, the rotation stops
// before use with the old key primary and names the node; once the node is
// back, a re-run completes.
func TestLoopbackGossipNodeDown(t *testing.T) {
	st, old := gossipState(t)
	c := startLoopCluster(t, 3, old)
	down := c.agents[2]
	c.stop(down)
	var log bytes.Buffer
	o := GossipOptions{
		State:    st,
		Agent:    &Client{API: c.client(c.agents[0])},
		Expected: loopExpected(3),
		Apply:    func(context.Context) error { return nil },
		Wait:     8 * time.Second,
		Poll:     500 * time.Millisecond,
		Log:      &log,
	}
	t0 := time.Now()
	_, err := Gossip(context.Background(), o)
	t.Logf("stopped after %s:\n%v", time.Since(t0).Round(time.Millisecond), err)
	var ge *GossipError
	if !errors.As(err, &ge) || ge.Step != StepInstall || !errors.Is(err, ErrNotEveryMember) {
		t.Fatalf("error %v, want a GossipError at install", err)
	}
	if !strings.Contains(err.Error(), "n3") {
		t.Errorf("error does not name n3")
	}
	kr, _ := st.Keyring()
	noSecret(t, err.Error()+log.String(), old, kr.Pending)
	if kr.Primary != old || kr.Pending == "" {
		t.Error("state: the old key must stay primary, the new one pending")
	}
	for _, a := range c.agents[:2] {
		if keys := diskKeyring(t, a, "local"); len(keys) == 0 || keys[0] != old {
			t.Errorf("%s: primary is not the old key any more (%s)", a.name, fps(keys))
		}
	}

	c.start(down)
	c.waitMembers(90*time.Second, 3)
	t0 = time.Now()
	res, err := Gossip(context.Background(), o)
	t.Logf("resume log:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resumed rotation: %s (steps %v)", time.Since(t0).Round(time.Millisecond), res.Steps)
	if res.ResumedAt != StepInstall {
		t.Errorf("resumed at %q", res.ResumedAt)
	}
	kr, _ = st.Keyring()
	for _, a := range c.agents {
		if keys := diskKeyring(t, a, "local"); len(keys) != 1 || keys[0] != kr.Primary {
			t.Errorf("%s: keyring %s, want only the new key", a.name, fps(keys))
		}
	}
}
