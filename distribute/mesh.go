package distribute

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	capi "github.com/hashicorp/consul/api"
	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Firewall actions of a MeshPlan.
const (
	FirewallLoad   = "load"   // (re)load the rules: changed, new, or not hooked in
	FirewallUnload = "unload" // remove mtlsctl's chains: the mesh is off or uninstalled
)

// MeshPlan is what apply does to a node's mesh besides its files: which
// proxy units it starts, restarts and removes, and the firewall. Restarts
// are only for proxies whose unit or registration changed (their digest),
// never for the others.
type MeshPlan struct {
	// Start lists units to enable and start: new ones, and ones found not
	// running.
	Start []string `json:"start,omitempty"`
	// Restart lists running units whose unit file or registration changed.
	Restart []string `json:"restart,omitempty"`
	// Remove lists units mtlsctl installed that the bundle no longer has:
	// stopped, disabled and deleted.
	Remove []string `json:"remove,omitempty"`
	// DaemonReload is set when a unit file is created, changed or deleted.
	DaemonReload bool `json:"daemon_reload,omitempty"`
	// Firewall is FirewallLoad, FirewallUnload or "".
	Firewall string `json:"firewall,omitempty"`
	// Why says, for the firewall action, what made it necessary.
	FirewallWhy string `json:"firewall_why,omitempty"`
	// UnloadScript is the node's current firewall script, run with
	// "unload" for FirewallUnload.
	UnloadScript string `json:"unload_script,omitempty"`
}

// Empty reports whether the plan does nothing.
func (m *MeshPlan) Empty() bool {
	return m == nil || (len(m.Start) == 0 && len(m.Restart) == 0 && len(m.Remove) == 0 && !m.DaemonReload && m.Firewall == "")
}

// Lines is the plan in short text lines, for `plan`.
func (m *MeshPlan) Lines() []string {
	if m.Empty() {
		return nil
	}
	var out []string
	for _, u := range m.Start {
		out = append(out, "start    "+u)
	}
	for _, u := range m.Restart {
		out = append(out, "restart  "+u+" (unit or registration changed)")
	}
	for _, u := range m.Remove {
		out = append(out, "remove   "+u)
	}
	switch m.Firewall {
	case FirewallLoad:
		out = append(out, "firewall load ("+m.FirewallWhy+")")
	case FirewallUnload:
		out = append(out, "firewall unload ("+m.FirewallWhy+")")
	}
	return out
}

// unitsOf returns the units of a mesh, proxies first, in order.
func unitsOf(m *consulcfg.Mesh) []string {
	if m == nil {
		return nil
	}
	var out []string
	for _, p := range m.Proxies {
		out = append(out, p.Unit)
	}
	return out
}

// planMesh compares the mesh the node last committed (old, from its
// manifest; nil when none) with the bundle's (new; nil when the mesh is off
// or the node is being uninstalled), and what runs on the node (r).
func planMesh(old, new *consulcfg.Mesh, r *remoteState, files []FilePlan) *MeshPlan {
	m := &MeshPlan{}
	oldDigest := map[string]string{}
	if old != nil {
		for _, p := range old.Proxies {
			oldDigest[p.Unit] = p.Digest
		}
	}
	if new != nil {
		for _, p := range new.Proxies {
			d, had := oldDigest[p.Unit]
			state := r.Units[p.Unit]
			switch {
			case !had || state != "active":
				m.Start = append(m.Start, p.Unit)
			case d != p.Digest:
				m.Restart = append(m.Restart, p.Unit)
			}
		}
		switch {
		case old == nil:
			m.Firewall, m.FirewallWhy = FirewallLoad, "new"
		case old.FirewallDigest != new.FirewallDigest:
			m.Firewall, m.FirewallWhy = FirewallLoad, "rules changed"
		case !r.Hooked["filter"] || !r.Hooked["nat"]:
			m.Firewall, m.FirewallWhy = FirewallLoad, "mtlsctl's chains are not hooked in on the node"
		}
	} else if old != nil {
		m.Firewall, m.FirewallWhy, m.UnloadScript = FirewallUnload, "the mesh is off for this node", old.FirewallScript
	}
	keep := map[string]bool{}
	for _, u := range unitsOf(new) {
		keep[u] = true
	}
	for _, u := range unitsOf(old) {
		if !keep[u] {
			m.Remove = append(m.Remove, u)
		}
	}
	for _, f := range files {
		if f.Kind == consulcfg.KindUnit && f.Action != ActionUnchanged && f.Action != ActionMetadata {
			m.DaemonReload = true
		}
	}
	if m.Empty() {
		return nil
	}
	return m
}

// meshStep is a node's mesh work in the journal: what mesh.sh does after
// the commit, and the restarts that follow it.
type meshStep struct {
	Gone         []string          `json:"gone,omitempty"`
	Unload       string            `json:"unload,omitempty"` // firewall script to run with "unload"
	Deletes      []string          `json:"deletes,omitempty"`
	DaemonReload bool              `json:"daemon_reload,omitempty"`
	Load         string            `json:"load,omitempty"` // firewall script to run with "load"
	Units        []string          `json:"units,omitempty"`
	Enable       []string          `json:"enable,omitempty"` // enabled only (the firewall unit: it runs at boot)
	Restart      []string          `json:"restart,omitempty"`
	Classes      map[string]string `json:"classes,omitempty"` // unit -> proxy class
	// Holds: unit -> "ADDR PORT LISTENERS": while the unit restarts, new
	// connections to ADDR:PORT wait (their SYNs are dropped and resent)
	// until the new proxy has LISTENERS listeners on PORT.
	Holds    map[string]string `json:"holds,omitempty"`
	Sidecars []string          `json:"sidecars,omitempty"`
	Purge    bool              `json:"purge,omitempty"`
}

// newMeshStep builds the journal's mesh step of a node plan (nil when the
// node has no mesh work and nothing to delete).
func newMeshStep(np *NodePlan, purge bool) *meshStep {
	var deletes []string
	for _, f := range np.Files {
		if f.Action == ActionDelete {
			deletes = append(deletes, f.Path)
		}
	}
	m := np.Mesh
	if m.Empty() && len(deletes) == 0 && !purge {
		return nil
	}
	st := &meshStep{Deletes: deletes, Purge: purge}
	if m != nil {
		st.Gone = slices.Clone(m.Remove)
		st.DaemonReload = m.DaemonReload
		st.Restart = m.Restart
		if m.Firewall == FirewallUnload {
			st.Unload = m.UnloadScript
			// Its boot-time unit goes with the rules.
			st.Gone = append(st.Gone, consulcfg.FirewallUnit)
		}
	}
	if nm := np.bundle.Mesh; nm != nil {
		if m != nil && m.Firewall == FirewallLoad {
			st.Load = nm.FirewallScript
			// Enabled, not started: apply loads the rules itself; the unit
			// loads them again at boot.
			st.Enable = []string{consulcfg.FirewallUnit}
		}
		if m != nil && (len(m.Start) > 0 || len(m.Restart) > 0) {
			// Enable and start every unit: cheap, and a unit found
			// disabled or stopped comes back.
			st.Units = unitsOf(nm)
		}
		st.Classes = map[string]string{}
		st.Holds = map[string]string{}
		for _, p := range nm.Proxies {
			st.Classes[p.Unit] = p.Class
			if h := holdSpec(p); h != "" && slices.Contains(st.Restart, p.Unit) {
				st.Holds[p.Unit] = h
			}
			if slices.Contains(st.Units, p.Unit) || slices.Contains(st.Restart, p.Unit) {
				st.Sidecars = append(st.Sidecars, p.Service+"-sidecar-proxy")
			}
		}
	}
	return st
}

// meshScript runs a node's mesh step (scripts/mesh.sh); keep leaves the
// node lock held for the restarts that follow.
func meshScript(st *meshStep, stateDir, runID string, keep bool) string {
	var v vars
	v.set("S", stateDir)
	v.set("RUN", runID)
	v.set("GONE", lines(st.Gone))
	v.set("UNLOAD", st.Unload)
	v.set("DELETES", lines(st.Deletes))
	v.set("DAEMON_RELOAD", bit(st.DaemonReload))
	v.set("LOAD", st.Load)
	v.set("UNITS", lines(st.Units))
	v.set("ENABLE", lines(st.Enable))
	v.set("PURGE", bit(st.Purge))
	v.set("KEEP", bit(keep))
	return stepScript("mesh", v)
}

// holdSpec is what restartunit holds while p restarts: an ingress proxy's
// node address and port (one listener), an egress proxy's loopback
// upstream addresses (127.0.0.0/8) and port (its public listener and one
// per upstream).
func holdSpec(p consulcfg.Proxy) string {
	host, port, err := net.SplitHostPort(p.Listen)
	if err != nil {
		return ""
	}
	if p.Ingress {
		return host + " " + port + " 1"
	}
	return "127.0.0.0/8 " + port + " " + strconv.Itoa(p.Upstreams+1)
}

// restartUnitScript restarts one proxy unit; hold (holdSpec) makes the
// restart invisible to clients: their new connections wait instead of
// being refused.
func restartUnitScript(unit, hold, stateDir, runID string) string {
	var v vars
	v.set("S", stateDir)
	v.set("RUN", runID)
	v.set("UNIT", unit)
	v.set("HOLD", hold)
	return stepScript("restartunit", v)
}

// classLocks serialise proxy restarts per class across nodes: never two
// proxies of one class (say every node's zk-2181) restart at once.
type classLocks struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (c *classLocks) lock(class string) func() {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*sync.Mutex{}
	}
	l := c.m[class]
	if l == nil {
		l = &sync.Mutex{}
		c.m[class] = l
	}
	c.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// sidecarWait bounds the wait for the agent to register a node's sidecars
// after its reload.
const sidecarWait = 60 * time.Second

// waitSidecars waits until the node's agent has registered every sidecar
// the proxies about to start serve (`consul connect proxy -sidecar-for`
// exits at once when its sidecar is unknown).
func (s *Session) waitSidecars(ctx context.Context, n *inventory.Node, ids []string) error {
	if len(ids) == 0 || s.o.NoAgents {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, sidecarWait)
	defer cancel()
	var missing []string
	for {
		client, err := s.Live().API(ctx, n.Name)
		if err == nil {
			var svcs map[string]*capi.AgentService
			svcs, err = client.Agent().Services()
			if err == nil {
				missing = missing[:0]
				for _, id := range ids {
					if svcs[id] == nil {
						missing = append(missing, id)
					}
				}
				if len(missing) == 0 {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if len(missing) > 0 {
				return fmt.Errorf("the agent on %s has not registered %s after %s: check `consul validate` and the agent log", n.Name, strings.Join(missing, ", "), sidecarWait)
			}
			return fmt.Errorf("the agent on %s did not answer within %s: %v", n.Name, sidecarWait, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// runMesh runs a node's mesh step then its proxy restarts, one proxy of a
// class at a time across the cluster; the lock is released at the end.
func (s *Session) runMesh(ctx context.Context, c *transport.Conn, n *inventory.Node, jn *journalNode, runID string) error {
	st := jn.Mesh
	if err := s.waitSidecars(ctx, n, st.Sidecars); err != nil {
		c.Run(ctx, "release", reloadScript("", "", jn.StateDir, runID))
		return err
	}
	s.report(n.Name, "mesh", meshSummary(st), nil)
	keep := len(st.Restart) > 0
	out, err := c.Run(ctx, "mesh", meshScript(st, jn.StateDir, runID, keep))
	if err != nil || !strings.Contains(out, "MESHDONE") {
		if err == nil {
			err = fmt.Errorf("the mesh step ended without confirming")
		}
		if keep {
			c.Run(ctx, "release", reloadScript("", "", jn.StateDir, runID))
		}
		return err
	}
	if !keep {
		return nil
	}
	units := slices.Clone(st.Restart)
	sort.Strings(units)
	var errs []string
	for _, u := range units {
		unlock := s.classes.lock(st.Classes[u])
		s.report(n.Name, "restart-proxy", u, nil)
		_, err := c.Run(ctx, "restart-proxy", restartUnitScript(u, st.Holds[u], jn.StateDir, runID))
		unlock()
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	if _, err := c.Run(ctx, "release", reloadScript("", "", jn.StateDir, runID)); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func meshSummary(st *meshStep) string {
	var parts []string
	if len(st.Units) > 0 {
		parts = append(parts, fmt.Sprintf("%d units enabled and started", len(st.Units)))
	}
	if len(st.Restart) > 0 {
		parts = append(parts, fmt.Sprintf("%d to restart", len(st.Restart)))
	}
	if len(st.Gone) > 0 {
		parts = append(parts, fmt.Sprintf("%d removed", len(st.Gone)))
	}
	if st.Load != "" {
		parts = append(parts, "firewall loaded")
	}
	if st.Unload != "" {
		parts = append(parts, "firewall unloaded")
	}
	if len(st.Deletes) > 0 {
		parts = append(parts, fmt.Sprintf("%d files deleted", len(st.Deletes)))
	}
	return strings.Join(parts, ", ")
}
