//go:build linux

package e2e

// The mesh benchmark behind `make bench-mesh` (scripts/bench-mesh.sh): what
// the Consul Connect built-in proxies cost on a real 5-node cluster that
// mtlsctl brought up (real Consul 1.6.2 agents and proxies, real iptables in
// each node's own network namespace), against the same traffic sent directly
// between the same two network namespaces. It runs only with MTLSCTL_BENCH=1,
// so `go test ./...` skips it; timings are reported, never asserted. Only the
// paths are checked: the mesh sink must see its connection from 127.0.0.1
// (the ingress proxy), the direct sink from the client node's address.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/examples"
	"github.com/mtlsctl/mtlsctl/internal/app"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// The benchmark's own network, so it can run beside the other tests.
const (
	bmSubnet = "198.18.80.0/24"
	bmPrefix = "bm"

	bmClient     = "n2"  // a router node
	bmServer     = "n3"  // a Cassandra node (router -> cassandra is allowed)
	bmMeshPort   = 9042  // Cassandra CQL: meshed (nat -> egress -> mTLS -> ingress)
	bmDirectPort = 19042 // a port mtlsctl's rules do not touch

	bmStreamBytes = 100_000_000 // one 100 MB stream (MB = 10^6 bytes)
	bmRTTs        = 1000        // timed round trips per connection
	bmRTTWarmup   = 50          // untimed round trips first
	bmRTTSize     = 100         // bytes each way per round trip
	bmChunk       = 256 << 10   // write/read buffer of the stream
	bmPeerField   = 64          // the sink's greeting: the peer it saw, space padded
	bmSinkWatch   = 12 * time.Second
)

// The hand-built reference (../shared/REFERENCE.md, "Cost of the built-in
// proxy"): Consul 1.6.2 built-in proxies set up by hand on two harness hosts,
// Python client and server.
const (
	bmRefMeshP50    = "0.13-0.29"
	bmRefDirectP50  = "0.08"
	bmRefMeshMBs    = "285-350"
	bmRefDirectMBs  = "1,700-1,900"
	bmRefRSSPerProc = "~45 MB"
)

// bmRun is one run's figures for one path.
type bmRun struct {
	mbps           float64 // stream throughput, 10^6 bytes/s
	p50, p99, mean time.Duration
	max            time.Duration
	setup          time.Duration // mean over the run's 2 connections: dial until the sink's greeting
	proxyCPU       time.Duration // mesh only: CPU the two proxies on the path used for the stream
}

// bmProcMem is one proxy process as measured.
type bmProcMem struct {
	node    string
	unit    string
	ingress bool
	target  string
	pid     int
	rssKB   int64 // VmRSS
	hwmKB   int64 // VmHWM (peak resident)
	anonKB  int64 // RssAnon: the process's own pages
	fileKB  int64 // RssFile: mapped file pages (the consul binary), shared
	pssKB   int64 // Pss from smaps_rollup: shared pages divided among their users
}

// bmEdgeNode is one node of the 13-node example.
type bmEdgeNode struct {
	name      string
	comps     []string
	ingress   int
	egress    int
	upstreams int
}

// bmReport collects everything TestBenchMesh prints.
type bmReport struct {
	started     time.Time
	loadPre     string // before the cluster was built
	loadMeasure string // after it was up, right before the timed runs
	loadPost    string
	machine     string
	consul      string
	clusterUp   time.Duration
	runs        int
	mesh        []bmRun
	direct      []bmRun
	order       []string // which path went first in each run
	idle        []bmProcMem
	after       []bmProcMem
	restarted   []string     // proxies whose PID changed during the runs
	logStart    []bmLogGroup // error and warning lines in the proxies' logs up to the timed runs
	logRuns     []bmLogGroup // the same, written during the timed runs and the sink's watch after them
	sinkEmpty   int          // connections the mesh sink got that closed before sending a byte
	sinkWindow  time.Duration
	egressUp    map[string]int
	edge        []bmEdgeNode
	firewall    string // what n3's filter rules say about the direct port
	pathMesh    string
	pathDirect  string
	elapsed     time.Duration
}

// TestBenchMesh measures one 100 MB stream and 1,000 round trips of 100
// bytes from a router node to a Cassandra node, through the mesh and
// directly, MTLSCTL_BENCH_RUNS times (default 3), and every proxy process's
// resident memory; then counts the proxies of examples/edge-13.yaml and
// estimates their memory from the measured per-proxy figures.
func TestBenchMesh(t *testing.T) {
	if os.Getenv("MTLSCTL_BENCH") != "1" {
		t.Skip("benchmark: set MTLSCTL_BENCH=1 (or run `make bench-mesh`) to run it")
	}
	runs := 3
	if env := os.Getenv("MTLSCTL_BENCH_RUNS"); env != "" {
		n, err := strconv.Atoi(env)
		if err != nil || n < 1 || n > 100 {
			t.Fatalf("MTLSCTL_BENCH_RUNS=%q: want an integer from 1 to 100", env)
		}
		runs = n
	}
	rep := &bmReport{started: time.Now(), loadPre: benchLoadavg(), machine: bmMachine(), runs: runs, egressUp: map[string]int{}}

	lc := lcStart(t, lcSpec{version: "1.6.2", subnet: bmSubnet, prefix: bmPrefix, nodes: lcFiveNodes()})
	lcCheckHealth(t, lc.Health, map[string]int{"dc-1": 3}, 5)
	if t.Failed() {
		return
	}
	rep.clusterUp = lc.Applied
	rep.consul = bmConsulVersion(lc.consul)
	client, server := lc.net.Node(bmClient), lc.net.Node(bmServer)

	// The stand-in Cassandra on n3 first, so that it sees as much of the
	// proxies' life as it can (it counts connections that carry nothing).
	meshSink := bmListen(t, server, "0.0.0.0:"+strconv.Itoa(bmMeshPort))

	// Every proxy of every node, from the manifest apply left on the node.
	meshes := map[string]*consulcfg.Mesh{}
	for _, nd := range lc.net.Nodes() {
		meshes[nd.Name] = bmNodeMesh(t, nd)
	}
	rep.idle = bmMeasureMem(t, lc.net, meshes)

	// The sinks: the stand-in Cassandra above on every address at 9042 (the
	// ingress proxy delivers to 127.0.0.1:9042; the firewall admits loopback
	// only), and one on n3's address at 19042 for the direct path.
	bmListen(t, server, net.JoinHostPort(server.Addr, strconv.Itoa(bmDirectPort)))
	meshAddr := net.JoinHostPort(server.Addr, strconv.Itoa(bmMeshPort))
	directAddr := net.JoinHostPort(server.Addr, strconv.Itoa(bmDirectPort))

	// The firewall must leave the direct port alone: show what n3's rules
	// say about it (nothing), and check both paths end where they should.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := server.Exec(ctx, "sh", "-c", "iptables -S; iptables -t nat -S"); err != nil {
		t.Fatalf("%s: iptables: %v\n%s", bmServer, err, out)
	} else {
		rules := strings.Count("\n"+string(out), "\n-A ")
		rep.firewall = fmt.Sprintf("of %s's %d filter and nat rules, %d name port %d and none names %d", bmServer, rules,
			strings.Count(string(out), " "+strconv.Itoa(bmMeshPort)), bmMeshPort, bmDirectPort)
		if bytes.Contains(out, []byte(strconv.Itoa(bmDirectPort))) {
			rep.firewall = fmt.Sprintf("%s's rules name port %d", bmServer, bmDirectPort)
		}
	}
	for _, p := range []struct {
		addr string
		want string
		note *string
	}{{meshAddr, "127.0.0.1", &rep.pathMesh}, {directAddr, client.Addr, &rep.pathDirect}} {
		c, peer, _, err := bmDial(client, p.addr, 'E', bmRTTSize)
		if err != nil {
			t.Fatalf("%s -> %s: %v", bmClient, p.addr, err)
		}
		c.Close()
		if peerHost(peer) != p.want {
			t.Fatalf("%s -> %s: the sink saw %s, want %s: the path is not the one measured", bmClient, p.addr, peer, p.want)
		}
		*p.note = fmt.Sprintf("%s dials %s from its own netns; the sink saw %s", bmClient, p.addr, peer)
	}

	// The two proxies on the mesh path: n2's egress, n3's ingress for 9042.
	var pathPIDs []int
	for _, pm := range rep.idle {
		if (pm.node == bmClient && !pm.ingress) || (pm.node == bmServer && pm.target == "127.0.0.1:"+strconv.Itoa(bmMeshPort)) {
			pathPIDs = append(pathPIDs, pm.pid)
		}
	}
	if len(pathPIDs) != 2 {
		t.Fatalf("found %d of the 2 proxies on the mesh path (%s egress, %s ingress for %d)", len(pathPIDs), bmClient, bmServer, bmMeshPort)
	}

	payload := make([]byte, bmChunk)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	logOffsets := bmLogSizes(lc.net, meshes)
	rep.logStart = bmProxyLogs(lc.net, meshes, nil, logOffsets)
	rep.loadMeasure = benchLoadavg()
	for r := 0; r < runs; r++ {
		paths := []string{"mesh", "direct"}
		if r%2 == 1 {
			paths = []string{"direct", "mesh"} // alternate, so drift favours neither
		}
		rep.order = append(rep.order, paths[0]+" first")
		res := map[string]bmRun{}
		for _, path := range paths {
			addr := directAddr
			if path == "mesh" {
				addr = meshAddr
			}
			runtime.GC()
			cpu0 := bmCPU(pathPIDs)
			mbps, setup1, err := bmStream(client, addr, payload)
			cpu := bmCPU(pathPIDs) - cpu0
			if err != nil {
				t.Fatalf("run %d, %s stream: %v", r+1, path, err)
			}
			runtime.GC()
			lat, setup2, err := bmRoundTrips(client, addr)
			if err != nil {
				t.Fatalf("run %d, %s round trips: %v", r+1, path, err)
			}
			x := bmSummary(lat)
			x.mbps = mbps
			x.setup = (setup1 + setup2) / 2
			if path == "mesh" {
				x.proxyCPU = cpu
			}
			res[path] = x
			t.Logf("run %d %-6s: %7.1f MB/s; round trip p50 %.3f ms, p99 %.3f ms, mean %.3f ms", r+1, path, mbps, bmMS(x.p50), bmMS(x.p99), bmMS(x.mean))
		}
		rep.mesh = append(rep.mesh, res["mesh"])
		rep.direct = append(rep.direct, res["direct"])
	}

	rep.after = bmMeasureMem(t, lc.net, meshes)
	for i, a := range rep.after {
		if b := rep.idle[i]; a.pid != b.pid {
			rep.restarted = append(rep.restarted, fmt.Sprintf("%s %s (PID %d -> %d)", a.node, a.unit, b.pid, a.pid))
		}
	}
	// Give the 9042 sink a few of the sidecar check's 3 s intervals to see
	// what reaches a component besides the benchmark's own connections.
	if w := bmSinkWatch - meshSink.window(); w > 0 {
		time.Sleep(w)
	}
	rep.sinkEmpty, rep.sinkWindow = meshSink.empty(), meshSink.window()
	rep.logRuns = bmProxyLogs(lc.net, meshes, logOffsets, nil)
	for _, nd := range lc.net.Nodes() {
		for _, p := range meshes[nd.Name].Proxies {
			if !p.Ingress {
				rep.egressUp[nd.Name] = p.Upstreams
			}
		}
	}
	rep.edge = bmEdge13(t)
	rep.loadPost = benchLoadavg()
	rep.elapsed = time.Since(rep.started)

	text := rep.markdown()
	t.Log("\n" + text)
	if out := os.Getenv("MTLSCTL_BENCH_OUT"); out != "" {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("report written to %s", out)
	}
}

// bmNodeMesh reads the mesh section of the manifest apply wrote on nd.
func bmNodeMesh(t *testing.T, nd *testnet.Node) *consulcfg.Mesh {
	t.Helper()
	data, err := os.ReadFile(nd.Path("/var/lib/mtlsctl/manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Mesh *consulcfg.Mesh `json:"mesh"`
	}
	if err := json.Unmarshal(data, &man); err != nil || man.Mesh == nil || len(man.Mesh.Proxies) == 0 {
		t.Fatalf("%s: manifest has no proxies: %v", nd.Name, err)
	}
	return man.Mesh
}

// bmMeasureMem reads VmRSS and VmHWM of every proxy process, in node and
// manifest order. Each must be a running consul process in its node.
func bmMeasureMem(t *testing.T, tn *testnet.Net, meshes map[string]*consulcfg.Mesh) []bmProcMem {
	t.Helper()
	var out []bmProcMem
	for _, nd := range tn.Nodes() {
		for _, p := range meshes[nd.Name].Proxies {
			pid, ok := nd.UnitPID(p.Unit)
			if !ok {
				t.Fatalf("%s: %s is not running", nd.Name, p.Unit)
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if !bytes.Contains(cmdline, []byte("connect\x00proxy\x00")) {
				t.Fatalf("%s: %s: PID %d is not a consul connect proxy: %q", nd.Name, p.Unit, pid, cmdline)
			}
			m, err := bmStatus(pid)
			if err != nil {
				t.Fatalf("%s: %s: %v", nd.Name, p.Unit, err)
			}
			m.node, m.unit, m.ingress, m.target, m.pid = nd.Name, p.Unit, p.Ingress, p.Target, pid
			out = append(out, m)
		}
	}
	return out
}

// bmStatus reads VmRSS, VmHWM, RssAnon and RssFile (kB) from
// /proc/<pid>/status and Pss from /proc/<pid>/smaps_rollup.
func bmStatus(pid int) (bmProcMem, error) {
	var m bmProcMem
	fields := map[string]*int64{"VmRSS:": &m.rssKB, "VmHWM:": &m.hwmKB, "RssAnon:": &m.anonKB, "RssFile:": &m.fileKB, "Pss:": &m.pssKB}
	for _, f := range []string{"status", "smaps_rollup"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			if f == "smaps_rollup" {
				continue // older kernels: no Pss
			}
			return m, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			if dst := fields[f[0]]; dst != nil {
				*dst, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	if m.rssKB == 0 {
		return m, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// bmCPU is the user+system time the processes used so far.
func bmCPU(pids []int) time.Duration {
	procs, err := benchProcTimes()
	if err != nil {
		return 0
	}
	var ticks int64
	for _, pid := range pids {
		p := procs[pid]
		ticks += p.utime + p.stime
	}
	return time.Duration(ticks) * time.Second / benchClockTicks
}

// bmSink is a stand-in server. Each connection opens with a 9-byte header
// (an op and a uint64 argument) and gets back bmPeerField bytes naming the
// peer the sink saw (so the client knows the whole path is up before it
// starts the clock). Op 'S': read the argument's number of bytes, then
// reply with that count as a uint64 (the proxy does not pass on a
// half-close, so the sink answers after N bytes, not at EOF). Op 'E': echo
// records of the argument's size until the client closes.
type bmSink struct {
	ln    net.Listener
	wg    sync.WaitGroup
	start time.Time

	mu     sync.Mutex
	nEmpty int // connections closed before the header's first byte
}

func (s *bmSink) empty() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nEmpty
}

func (s *bmSink) window() time.Duration { return time.Since(s.start) }

func bmListen(t *testing.T, nd *testnet.Node, addr string) *bmSink {
	t.Helper()
	ln, err := nd.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s: sink on %s: %v", nd.Name, addr, err)
	}
	s := &bmSink{ln: ln, start: time.Now()}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *bmSink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			if !bmHandle(c) {
				s.mu.Lock()
				s.nEmpty++
				s.mu.Unlock()
			}
		}()
	}
}

// bmHandle serves one connection; it returns false when the peer closed
// before sending a byte.
func bmHandle(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	var h [9]byte
	if k, err := io.ReadFull(c, h[:]); err != nil {
		return k > 0
	}
	greet := []byte(fmt.Sprintf("%-*s", bmPeerField, c.RemoteAddr().String()))
	if _, err := c.Write(greet[:bmPeerField]); err != nil {
		return true
	}
	arg := binary.BigEndian.Uint64(h[1:])
	switch h[0] {
	case 'S':
		buf := make([]byte, bmChunk)
		var got uint64
		for got < arg {
			k, err := c.Read(buf[:min(uint64(len(buf)), arg-got)])
			got += uint64(k)
			if err != nil {
				break
			}
		}
		var ack [8]byte
		binary.BigEndian.PutUint64(ack[:], got)
		_, _ = c.Write(ack[:])
		// Wait for the client to close (no half-close through the proxy).
		_, _ = c.Read(buf[:1])
	case 'E':
		if arg == 0 || arg > 1<<20 {
			return true
		}
		buf := make([]byte, arg)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return true
			}
			if _, err := c.Write(buf); err != nil {
				return true
			}
		}
	}
	return true
}

// bmDial connects from nd to addr (inside nd's netns: through its nat
// rules), sends the header and returns the connection, the peer the sink
// saw and how long that took (connect, the mesh's mTLS handshake, one round
// trip).
func bmDial(nd *testnet.Node, addr string, op byte, arg uint64) (net.Conn, string, time.Duration, error) {
	start := time.Now()
	c, err := nd.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, "", 0, err
	}
	var h [9]byte
	h[0] = op
	binary.BigEndian.PutUint64(h[1:], arg)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(h[:]); err != nil {
		c.Close()
		return nil, "", 0, err
	}
	greet := make([]byte, bmPeerField)
	if _, err := io.ReadFull(c, greet); err != nil {
		c.Close()
		return nil, "", 0, fmt.Errorf("no greeting from the sink: %w", err)
	}
	return c, strings.TrimSpace(string(greet)), time.Since(start), nil
}

// bmStream sends bmStreamBytes from nd to addr and returns MB/s (10^6 bytes),
// timed from the first byte written to the sink's byte count read back.
func bmStream(nd *testnet.Node, addr string, payload []byte) (float64, time.Duration, error) {
	c, _, setup, err := bmDial(nd, addr, 'S', bmStreamBytes)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(90 * time.Second))
	start := time.Now()
	for sent := 0; sent < bmStreamBytes; {
		k, err := c.Write(payload[:min(len(payload), bmStreamBytes-sent)])
		sent += k
		if err != nil {
			return 0, 0, fmt.Errorf("after %d bytes: %w", sent, err)
		}
	}
	var ack [8]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return 0, 0, fmt.Errorf("no byte count back: %w", err)
	}
	d := time.Since(start)
	if got := binary.BigEndian.Uint64(ack[:]); got != bmStreamBytes {
		return 0, 0, fmt.Errorf("the sink got %d bytes, want %d", got, bmStreamBytes)
	}
	return bmStreamBytes / d.Seconds() / 1e6, setup, nil
}

// bmRoundTrips does bmRTTWarmup then bmRTTs request/response round trips of
// bmRTTSize bytes on one connection and returns the timed ones.
func bmRoundTrips(nd *testnet.Node, addr string) ([]time.Duration, time.Duration, error) {
	c, _, setup, err := bmDial(nd, addr, 'E', bmRTTSize)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	req, resp := make([]byte, bmRTTSize), make([]byte, bmRTTSize)
	lat := make([]time.Duration, 0, bmRTTs)
	for i := 0; i < bmRTTWarmup+bmRTTs; i++ {
		binary.BigEndian.PutUint64(req, uint64(i))
		start := time.Now()
		if _, err := c.Write(req); err != nil {
			return nil, 0, fmt.Errorf("round trip %d: %w", i, err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return nil, 0, fmt.Errorf("round trip %d: %w", i, err)
		}
		d := time.Since(start)
		if !bytes.Equal(req, resp) {
			return nil, 0, fmt.Errorf("round trip %d: the echo differs", i)
		}
		if i >= bmRTTWarmup {
			lat = append(lat, d)
		}
	}
	return lat, setup, nil
}

// bmSummary gives nearest-rank percentiles, the mean and the maximum.
func bmSummary(lat []time.Duration) bmRun {
	s := slices.Clone(lat)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(float64(len(s))*p+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return bmRun{p50: rank(0.50), p99: rank(0.99), mean: sum / time.Duration(len(s)), max: s[len(s)-1]}
}

// bmLogGroup is one kind of error or warning line in the proxies' logs.
type bmLogGroup struct {
	kind    string // "ingress" or "egress"
	pattern string // the message with its numbers replaced by N
	count   int
	proxies map[string]bool // node + short proxy name
	example string
	// gaps are the seconds between consecutive lines of this kind of one
	// proxy, from the log's own timestamps.
	gaps []float64
}

// bmLogSizes returns the current size of every proxy's log, by unit and node.
func bmLogSizes(tn *testnet.Net, meshes map[string]*consulcfg.Mesh) map[string]int64 {
	out := map[string]int64{}
	for _, nd := range tn.Nodes() {
		for _, p := range meshes[nd.Name].Proxies {
			if st, err := os.Stat(nd.ServiceLogFile(p.Unit)); err == nil {
				out[nd.Name+" "+p.Unit] = st.Size()
			}
		}
	}
	return out
}

// bmProxyLogs groups the [ERR], [WARN] and panic lines of every proxy's log
// from the offsets in from (nil: the start) up to those in to (nil: the end).
func bmProxyLogs(tn *testnet.Net, meshes map[string]*consulcfg.Mesh, from, to map[string]int64) []bmLogGroup {
	groups := map[string]*bmLogGroup{}
	var order []string
	for _, nd := range tn.Nodes() {
		for _, p := range meshes[nd.Name].Proxies {
			data, err := os.ReadFile(nd.ServiceLogFile(p.Unit))
			if err != nil {
				continue
			}
			key := nd.Name + " " + p.Unit
			lo, hi := int64(0), int64(len(data))
			if from != nil {
				lo = min(from[key], hi)
			}
			if to != nil {
				hi = min(to[key], hi)
			}
			kind := "egress"
			if p.Ingress {
				kind = "ingress"
			}
			last := map[string]time.Time{}
			for _, line := range strings.Split(string(data[lo:hi]), "\n") {
				level := ""
				switch {
				case strings.Contains(line, "[ERR]"):
					level = "[ERR]"
				case strings.Contains(line, "[WARN]"):
					level = "[WARN]"
				case strings.Contains(line, "panic"):
					level = "panic"
				default:
					continue
				}
				msg := line
				if i := strings.Index(line, level); i >= 0 {
					msg = line[i:]
				}
				pat := bmDigits.ReplaceAllString(msg, "N")
				g := groups[kind+" "+pat]
				if g == nil {
					g = &bmLogGroup{kind: kind, pattern: pat, proxies: map[string]bool{}, example: nd.Name + " " + bmShortProxy(p.Unit) + ": " + strings.TrimSpace(line)}
					groups[kind+" "+pat] = g
					order = append(order, kind+" "+pat)
				}
				if tl := strings.TrimSpace(line); len(tl) >= 19 {
					if ts, err := time.Parse("2006/01/02 15:04:05", tl[:19]); err == nil {
						if prev, ok := last[pat]; ok {
							g.gaps = append(g.gaps, ts.Sub(prev).Seconds())
						}
						last[pat] = ts
					}
				}
				g.count++
				g.proxies[nd.Name+" "+bmShortProxy(p.Unit)] = true
			}
		}
	}
	out := make([]bmLogGroup, 0, len(order))
	for _, k := range order {
		out = append(out, *groups[k])
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].count > out[j].count })
	return out
}

var bmDigits = regexp.MustCompile(`[0-9]+`)

// bmEdge13 generates examples/edge-13.yaml's credentials in a temporary
// state and renders its bundles offline (inventory, ca and consulcfg, as
// `mtlsctl render` does), and returns each node's proxies.
func bmEdge13(t *testing.T) []bmEdgeNode {
	t.Helper()
	data, err := examples.FS.ReadFile("edge-13.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	inv := filepath.Join(dir, "edge-13.yaml")
	if err := os.WriteFile(inv, data, 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := app.Generate(app.Common{Inventory: inv, State: state, Stdout: io.Discard, Stderr: io.Discard}, app.GenerateOptions{}); err != nil {
		t.Fatalf("edge-13: generate: %v", err)
	}
	topo, err := inventory.Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ca.Open(state, ca.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := st.Credentials(topo)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := st.Ports()
	if err != nil || ports == nil {
		t.Fatalf("edge-13: ports: %v", err)
	}
	leaves := map[string]consulcfg.Leaf{}
	for name, l := range creds.Leaves {
		leaves[name] = consulcfg.Leaf{CertPEM: l.CertPEM, KeyPEM: l.KeyPEM}
	}
	bundles, err := consulcfg.Render(consulcfg.Input{Topology: topo, Ports: ports, CABundle: creds.CABundlePEM, Leaves: leaves, GossipKey: creds.GossipKey})
	if err != nil {
		t.Fatalf("edge-13: render: %v", err)
	}
	var out []bmEdgeNode
	for i, b := range bundles {
		if b.Mesh == nil {
			t.Fatalf("edge-13: %s has no mesh", b.Node)
		}
		e := bmEdgeNode{name: b.Node}
		for _, c := range topo.Nodes[i].Components {
			e.comps = append(e.comps, string(c))
		}
		for _, p := range b.Mesh.Proxies {
			if p.Ingress {
				e.ingress++
			} else {
				e.egress++
				e.upstreams = p.Upstreams
			}
		}
		out = append(out, e)
	}
	return out
}

func bmConsulVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "consul (version unknown)"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// bmMachine describes the machine: cores, CPU model, memory, kernel, Go.
func bmMachine() string {
	model, mem := "unknown CPU", ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					mem = fmt.Sprintf(", %.1f GiB RAM", kb/1048576)
				}
			}
		}
	}
	kernel := "unknown"
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(data))
	}
	return fmt.Sprintf("%d cores (nproc), %s%s; Linux %s; %s", runtime.NumCPU(), model, mem, kernel, runtime.Version())
}

func bmMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func bmMiB(kb int64) float64 { return float64(kb) / 1024 }

// bmStat is the median and range of values over the runs.
func bmStat(v []float64, format string) string {
	s := slices.Clone(v)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	if len(s) == 1 {
		return fmt.Sprintf(format, med)
	}
	return fmt.Sprintf(format+" ("+format+"-"+format+")", med, s[0], s[len(s)-1])
}

func bmPick(runs []bmRun, f func(bmRun) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

func bmMedian(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// bmKind summarises the memory of one kind of proxy (MiB).
type bmKind struct {
	n                    int
	mean, min, max       float64 // VmRSS
	anonMean, fileMean   float64 // RssAnon, RssFile
	fileMax, hwmMax, pss float64 // pss: mean
}

func bmKinds(ps []bmProcMem) (ingress, egress bmKind) {
	add := func(k *bmKind, p bmProcMem) {
		v := bmMiB(p.rssKB)
		if k.n == 0 || v < k.min {
			k.min = v
		}
		k.max = max(k.max, v)
		k.hwmMax = max(k.hwmMax, bmMiB(p.hwmKB))
		k.fileMax = max(k.fileMax, bmMiB(p.fileKB))
		avg := func(old, x float64) float64 { return (old*float64(k.n) + x) / float64(k.n+1) }
		k.mean = avg(k.mean, v)
		k.anonMean = avg(k.anonMean, bmMiB(p.anonKB))
		k.fileMean = avg(k.fileMean, bmMiB(p.fileKB))
		k.pss = avg(k.pss, bmMiB(p.pssKB))
		k.n++
	}
	for _, p := range ps {
		if p.ingress {
			add(&ingress, p)
		} else {
			add(&egress, p)
		}
	}
	return ingress, egress
}

// markdown renders the report.
func (r *bmReport) markdown() string {
	var b strings.Builder
	b.WriteString("# Mesh benchmark: Consul Connect built-in proxies vs direct\n\n")
	fmt.Fprintf(&b, "Generated by `make bench-mesh` (scripts/bench-mesh.sh → `MTLSCTL_BENCH=1 go test ./e2e -run '^TestBenchMesh$'`) on %s. Timings are reported, never asserted.\n\n", r.started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- machine: %s\n", r.machine)
	fmt.Fprintf(&b, "- load average (1, 5, 15 min): %s before the test; %s once the cluster was up, right before the timed runs; %s after. Other jobs may share the machine: a load above the core count makes every figure noisier, the direct ones (which are short) most.\n", r.loadPre, r.loadMeasure, r.loadPost)
	fmt.Fprintf(&b, "- cluster: the 5-node Apigee layout of the e2e tests (ZooKeeper + Cassandra on n1-n3, router + message processor on n2-n3, management server + OpenLDAP on n1, Postgres + Qpid on n4-n5), one network namespace per node on %s, all on this machine's %d cores; real %s agents; `mtlsctl generate` + `apply --yes` brought up the mesh (proxies as units, intentions, firewall and nat rules in each node's namespace) in %.1f s\n",
		bmSubnet, runtime.NumCPU(), r.consul, r.clusterUp.Seconds())
	fmt.Fprintf(&b, "- through the mesh: a client on router node %s dials %s's address at %d (Cassandra CQL; router -> cassandra is allowed) from inside %s's namespace: nat OUTPUT -> %s's egress proxy upstream (127.77.x.y) -> mTLS -> %s's ingress proxy -> 127.0.0.1:%d. %s.\n",
		bmClient, bmServer, bmMeshPort, bmClient, bmClient, bmServer, bmMeshPort, r.pathMesh)
	fmt.Fprintf(&b, "- direct: the same two namespaces, to a sink on %s's address at %d, a port mtlsctl's rules do not touch (%s). %s.\n", bmServer, bmDirectPort, r.firewall, r.pathDirect)
	fmt.Fprintf(&b, "- client and sinks are Go code in the test process (sockets opened inside the nodes' namespaces; TCP_NODELAY, Go's default). Stream: one connection, %d bytes (MB = 10^6 bytes) in %d KiB writes, timed from the first byte written until the sink's byte count comes back (the sink answers after N bytes: the built-in proxy does not pass on a half-close). Round trips: one connection, %d untimed then %d timed %d-byte requests, each echoed in full before the next; p50/p99 by nearest rank. Connection setup (with the mesh's mTLS handshake) is outside those timings and reported on its own line.\n",
		bmStreamBytes, bmChunk>>10, bmRTTWarmup, bmRTTs, bmRTTSize)
	fmt.Fprintf(&b, "- %d runs; each run does the stream then the round trips, for both paths, alternating which path goes first (%s). Figures are the median over the runs, the range (min-max) in parentheses. Clock: Go's monotonic clock.\n\n", r.runs, strings.Join(r.order, ", "))

	ing, egr := bmKinds(r.after)
	pick := func(runs []bmRun, f func(bmRun) float64) []float64 { return bmPick(runs, f) }
	ms := func(f func(bmRun) time.Duration) func(bmRun) float64 {
		return func(x bmRun) float64 { return bmMS(f(x)) }
	}
	meshMB, directMB := pick(r.mesh, func(x bmRun) float64 { return x.mbps }), pick(r.direct, func(x bmRun) float64 { return x.mbps })
	p50 := ms(func(x bmRun) time.Duration { return x.p50 })
	p99 := ms(func(x bmRun) time.Duration { return x.p99 })
	mean := ms(func(x bmRun) time.Duration { return x.mean })
	setup := ms(func(x bmRun) time.Duration { return x.setup })
	ratio := func(a, d []float64) string { return fmt.Sprintf("%.2fx", bmMedian(a)/bmMedian(d)) }
	row := func(name string, f func(bmRun) float64, format, refMesh, refDirect string) {
		m, d := pick(r.mesh, f), pick(r.direct, f)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", name, bmStat(m, format), bmStat(d, format), ratio(m, d), refMesh, refDirect)
	}

	b.WriteString("## Results, with the hand-built reference\n\n")
	b.WriteString("The reference is ../shared/REFERENCE.md, \"Cost of the built-in proxy\": the same Consul 1.6.2 built-in proxies set up by hand (one egress upstream to one ingress sidecar), Python client and server, two harness hosts on 2 cores. It gives ranges, and no p99 or mean. Its direct round trip (0.08 ms) is mostly the Python client and server; the Go client here is faster, so compare the mesh columns with each other, and each mesh/direct ratio only within its own setup.\n\n")
	b.WriteString("| measure | mtlsctl mesh (this run) | direct (this run) | mesh / direct | hand-built mesh (reference) | direct (reference) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| one 100 MB stream (MB/s) | %s | %s | %s | %s | %s |\n", bmStat(meshMB, "%.0f"), bmStat(directMB, "%.0f"), ratio(meshMB, directMB), bmRefMeshMBs, bmRefDirectMBs)
	row("round trip p50 (ms)", p50, "%.3f", bmRefMeshP50, bmRefDirectP50)
	row("round trip p99 (ms)", p99, "%.3f", "-", "-")
	row("round trip mean (ms)", mean, "%.3f", "-", "-")
	row("new connection: dial to first reply (ms)", setup, "%.2f", "-", "-")
	fmt.Fprintf(&b, "| resident memory per proxy process (VmRSS after the runs, MiB) | ingress %.1f (%.1f-%.1f, %d processes); egress %.1f (%.1f-%.1f, %d) | - | - | %s | - |\n\n",
		ing.mean, ing.min, ing.max, ing.n, egr.mean, egr.min, egr.max, egr.n, bmRefRSSPerProc)

	b.WriteString("### Every run\n\n")
	b.WriteString("| run | order | mesh MB/s | direct MB/s | mesh p50 / p99 / mean / max (ms) | direct p50 / p99 / mean / max (ms) | setup mesh / direct (ms) | CPU of the 2 path proxies for the mesh stream (s) |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for i := range r.mesh {
		m, d := r.mesh[i], r.direct[i]
		fmt.Fprintf(&b, "| %d | %s | %.0f | %.0f | %.3f / %.3f / %.3f / %.3f | %.3f / %.3f / %.3f / %.3f | %.2f / %.2f | %.2f |\n", i+1, r.order[i], m.mbps, d.mbps,
			bmMS(m.p50), bmMS(m.p99), bmMS(m.mean), bmMS(m.max), bmMS(d.p50), bmMS(d.p99), bmMS(d.mean), bmMS(d.max), bmMS(m.setup), bmMS(d.setup), m.proxyCPU.Seconds())
	}
	b.WriteString("\nSetup is the mean over the run's two connections from dial to the sink's greeting (through the mesh: the egress proxy's mTLS handshake with the ingress proxy and its connection to the sink). The CPU column is the user+system time of the two proxies on the path (the client node's egress proxy and the server node's 9042 ingress proxy) while the 100 MB went through them (/proc/<pid>/stat, 10 ms ticks).\n\n")

	b.WriteString("## Proxy processes and their memory, 5-node cluster (measured)\n\n")
	b.WriteString("Each node runs one `consul connect proxy -sidecar-for <service>` per meshed component listener (ingress) and one egress proxy holding all its upstreams. Each proxy process is found through its unit's PID and checked to be a `consul connect proxy`; VmRSS, RssAnon and RssFile come from /proc/<pid>/status: once the cluster was up, before any benchmark traffic (idle), and again after the runs.\n\n")
	b.WriteString("| node | components | proxy processes (ingress + egress) | egress upstreams | VmRSS total, idle (MiB) | VmRSS total, after the runs (MiB) | RssAnon total, after (MiB) | VmRSS per process, after (MiB) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
	var totIdle, totAfter, totAnon float64
	var totProcs int
	comps := map[string][]string{}
	for _, n := range lcFiveNodes() {
		comps[n.name] = n.components
	}
	var order []string
	for _, p := range r.after {
		if !slices.Contains(order, p.node) {
			order = append(order, p.node)
		}
	}
	for _, node := range order {
		var idle, after, anon float64
		var ni, ne int
		var per []string
		for i, p := range r.after {
			if p.node != node {
				continue
			}
			after += bmMiB(p.rssKB)
			anon += bmMiB(p.anonKB)
			idle += bmMiB(r.idle[i].rssKB)
			if p.ingress {
				ni++
			} else {
				ne++
			}
			per = append(per, fmt.Sprintf("%s %.1f", bmShortProxy(p.unit), bmMiB(p.rssKB)))
		}
		totIdle += idle
		totAfter += after
		totAnon += anon
		totProcs += ni + ne
		fmt.Fprintf(&b, "| %s | %s | %d (%d + %d) | %d | %.1f | %.1f | %.1f | %s |\n", node, strings.Join(comps[node], ", "), ni+ne, ni, ne, r.egressUp[node], idle, after, anon, strings.Join(per, ", "))
	}
	fmt.Fprintf(&b, "| **total** | | **%d** | | **%.1f** | **%.1f** | **%.1f** | |\n\n", totProcs, totIdle, totAfter, totAnon)
	ingIdle, egrIdle := bmKinds(r.idle)
	fmt.Fprintf(&b, "Per kind, after the runs: ingress VmRSS %.1f MiB mean (%.1f-%.1f) over %d processes, egress %.1f MiB mean (%.1f-%.1f) over %d; idle: ingress %.1f, egress %.1f. Peak (VmHWM) of any ingress proxy %.1f MiB, of any egress proxy %.1f MiB.\n\n",
		ing.mean, ing.min, ing.max, ing.n, egr.mean, egr.min, egr.max, egr.n, ingIdle.mean, egrIdle.mean, ing.hwmMax, egr.hwmMax)
	fmt.Fprintf(&b, "VmRSS counts the pages mapped from the consul binary (RssFile: %.1f MiB mean per ingress proxy, %.1f per egress) in every process, but the kernel keeps one copy of them per binary file, shared by all the proxies and the agent of a node. Each process's own memory is RssAnon: %.1f MiB mean per ingress proxy, %.1f per egress. Summing VmRSS (as the per-node and 13-node totals do, because that is the figure asked for and the one the reference gives) therefore overstates what the proxies take from a node; RssAnon total plus one copy of the binary pages (at most %.1f MiB) is closer. (In this test every node runs the same hard-linked binary, so Pss, which splits shared pages among all users on the machine, would understate a real node's share: mean Pss per proxy here %.1f MiB ingress, %.1f egress.)\n\n",
		ing.fileMean, egr.fileMean, ing.anonMean, egr.anonMean, max(ing.fileMax, egr.fileMax), ing.pss, egr.pss)

	b.WriteString("## The 13-node example (examples/edge-13.yaml): proxy count and an estimate of their memory\n\n")
	fmt.Fprintf(&b, "Counts from its bundles rendered offline (a throwaway `generate` state, then `consulcfg.Render`, as `mtlsctl render` does; Bundle.Mesh.Proxies). The memory is an **estimate from the per-proxy figures measured above, not a measurement**: each node's ingress proxies x the measured mean VmRSS per ingress proxy (%.1f MiB), plus its egress proxy x the measured mean VmRSS per egress proxy (%.1f MiB). The last column counts the binary's shared pages once per node instead (RssAnon means %.1f / %.1f MiB, plus %.1f MiB of binary pages). The egress proxies here hold 28-33 upstreams, against 23-28 in the measured run; their RSS did not vary with that count there.\n\n",
		ing.mean, egr.mean, ing.anonMean, egr.anonMean, max(ing.fileMax, egr.fileMax))
	b.WriteString("| node | components | proxy processes (ingress + egress) | egress upstreams | estimated VmRSS sum (MiB) | estimated, binary pages counted once (MiB) |\n|---|---|---:|---:|---:|---:|\n")
	var eProcs, eIng, eEgr int
	var eTot, eShared float64
	fileOnce := max(ing.fileMax, egr.fileMax)
	for _, e := range r.edge {
		est := float64(e.ingress)*ing.mean + float64(e.egress)*egr.mean
		shared := float64(e.ingress)*ing.anonMean + float64(e.egress)*egr.anonMean + fileOnce
		eTot += est
		eShared += shared
		eProcs += e.ingress + e.egress
		eIng += e.ingress
		eEgr += e.egress
		fmt.Fprintf(&b, "| %s | %s | %d (%d + %d) | %d | %.0f | %.0f |\n", e.name, strings.Join(e.comps, ", "), e.ingress+e.egress, e.ingress, e.egress, e.upstreams, est, shared)
	}
	fmt.Fprintf(&b, "| **total** | | **%d** (%d + %d) | | **%.0f (estimate)** | **%.0f (estimate)** |\n\n", eProcs, eIng, eEgr, eTot, eShared)
	fmt.Fprintf(&b, "At the reference's ~45 MB per proxy process, the same %d processes would be about %.0f MB.\n\n", eProcs, float64(eProcs)*45)

	b.WriteString("## Observations\n\n")
	if len(r.restarted) == 0 {
		b.WriteString("- no proxy restarted during the runs (every proxy kept its PID)\n")
	} else {
		fmt.Fprintf(&b, "- proxies restarted during the runs: %s\n", strings.Join(r.restarted, "; "))
	}
	fmt.Fprintf(&b, "- sidecar checks reach the components: mtlsctl registers each sidecar with a TCP check on its public listener every 3 s, and the built-in proxy opens its connection to the local service as soon as it accepts, so every check becomes a connection to the component. The 9042 sink, which only the benchmark's client dials, accepted %d connections that carried no byte in its %.0f s of life. With real components that is one empty connection from 127.0.0.1 every 3 s per meshed listener (servers that log such connections will log them); where nothing listens (here every port without a stand-in, and every egress proxy, whose local service is 127.0.0.1:1) the proxy logs an [ERR] \"failed to dial\" at the same rate, as below\n",
		r.sinkEmpty, r.sinkWindow.Seconds())
	logs := func(when string, gs []bmLogGroup) {
		if len(gs) == 0 {
			fmt.Fprintf(&b, "- %s: no [ERR], [WARN] or panic line in any proxy's log\n", when)
			return
		}
		n := 0
		for _, g := range gs {
			n += g.count
		}
		fmt.Fprintf(&b, "- %s: %d [ERR]/[WARN]/panic lines in the proxies' logs, by kind:\n", when, n)
		for _, g := range gs[:min(len(gs), 6)] {
			var who []string
			for k := range g.proxies {
				who = append(who, k)
			}
			sort.Strings(who)
			whoText := strings.Join(who, ", ")
			if len(who) > 4 {
				whoText = fmt.Sprintf("%d proxies, e.g. %s", len(who), strings.Join(who[:4], ", "))
			}
			ex := g.example
			if len(ex) > 240 {
				ex = ex[:240] + "..."
			}
			gap := ""
			if len(g.gaps) > 0 {
				gap = fmt.Sprintf("; median %.0f s between two such lines of one proxy", bmMedian(g.gaps))
			}
			fmt.Fprintf(&b, "  - %s proxies: %d x `%s` (%s%s); e.g. `%s`\n", g.kind, g.count, strings.ReplaceAll(g.pattern, "`", "'"), whoText, gap, strings.ReplaceAll(ex, "`", "'"))
		}
	}
	logs("cluster start up to the timed runs", r.logStart)
	logs("during the timed runs (and the few seconds after them that the 9042 sink watches)", r.logRuns)
	fmt.Fprintf(&b, "- whole test, cluster start included: %.0f s\n", r.elapsed.Seconds())
	return b.String()
}

// bmShortProxy turns mtlsctl-proxy-cassandra-9042-198-18-80-13.service into
// cassandra-9042 (egress-198-... into egress).
func bmShortProxy(unit string) string {
	s := strings.TrimSuffix(strings.TrimPrefix(unit, "mtlsctl-proxy-"), ".service")
	f := strings.Split(s, "-")
	if len(f) > 4 {
		f = f[:len(f)-4] // the dashed IPv4 address
	}
	return strings.Join(f, "-")
}
