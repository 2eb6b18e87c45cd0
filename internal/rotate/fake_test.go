package rotate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/consul/api"
)

// fakeMember is one agent of the fake cluster.
type fakeMember struct {
	name, dc string
	server   bool
	alive    bool
	keys     []string
	primary  string
	// stubborn members ignore `use` (to fake a member that does not switch).
	stubborn bool
}

// fakeCluster implements Agent over an in-memory cluster that follows
// Consul's keyring semantics: operations reach the live members only, a
// failed member is not counted in NumNodes, a member refuses to remove its
// primary key, and use needs the key installed.
type fakeCluster struct {
	mu            sync.Mutex
	members       []*fakeMember
	reportPrimary bool // Consul >= 1.11 reports PrimaryKeys
	// fail makes the nth call (1-based) of an operation fail; 0 = every call.
	fail  map[string]int
	calls map[string]int
	// partial makes the nth call of an operation answer as Consul does when
	// some members replied after the query timeout (the operation is not done).
	partial map[string]int
}

func newFakeCluster(key string, names ...string) *fakeCluster {
	f := &fakeCluster{fail: map[string]int{}, calls: map[string]int{}, partial: map[string]int{}}
	for i, n := range names {
		f.members = append(f.members, &fakeMember{name: n, dc: "dc1", server: i < 3, alive: true, keys: []string{key}, primary: key})
	}
	return f
}

func (f *fakeCluster) member(name string) *fakeMember {
	for _, m := range f.members {
		if m.name == name {
			return m
		}
	}
	panic("no member " + name)
}

var errInjected = errors.New("injected failure")

func (f *fakeCluster) enter(op string) error {
	f.calls[op]++
	if n, ok := f.fail[op]; ok && (n == 0 || n == f.calls[op]) {
		return fmt.Errorf("%s: %w", op, errInjected)
	}
	if n, ok := f.partial[op]; ok && n == f.calls[op] {
		return fmt.Errorf("Unexpected response code: 500 (%d/%d nodes reported success)", len(f.members)-1, len(f.members))
	}
	return nil
}

func (f *fakeCluster) KeyringInstall(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("install"); err != nil {
		return err
	}
	for _, m := range f.members {
		if m.alive && !slices.Contains(m.keys, key) {
			m.keys = append(m.keys, key)
		}
	}
	return nil
}

func (f *fakeCluster) KeyringUse(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("use"); err != nil {
		return err
	}
	var errs []error
	for _, m := range f.members {
		switch {
		case !m.alive:
		case !slices.Contains(m.keys, key):
			errs = append(errs, fmt.Errorf("%s: key not installed", m.name))
		case !m.stubborn:
			m.primary = key
		}
	}
	return errors.Join(errs...)
}

func (f *fakeCluster) KeyringRemove(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("remove"); err != nil {
		return err
	}
	var errs []error
	for _, m := range f.members {
		switch {
		case !m.alive:
		case m.primary == key:
			errs = append(errs, fmt.Errorf("%s: Removing the primary key is not allowed", m.name))
		default:
			m.keys = slices.DeleteFunc(m.keys, func(k string) bool { return k == key })
		}
	}
	return errors.Join(errs...)
}

func (f *fakeCluster) KeyringList(context.Context) ([]*api.KeyringResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("list"); err != nil {
		return nil, err
	}
	lan := &api.KeyringResponse{Datacenter: "dc1", Keys: map[string]int{}}
	wan := &api.KeyringResponse{Datacenter: "dc1", WAN: true, Keys: map[string]int{}}
	if f.reportPrimary {
		lan.PrimaryKeys, wan.PrimaryKeys = map[string]int{}, map[string]int{}
	}
	for _, m := range f.members {
		if !m.alive {
			continue
		}
		pools := []*api.KeyringResponse{lan}
		if m.server {
			pools = append(pools, wan)
		}
		for _, p := range pools {
			p.NumNodes++
			for _, k := range m.keys {
				p.Keys[k]++
			}
			if p.PrimaryKeys != nil {
				p.PrimaryKeys[m.primary]++
			}
		}
	}
	return []*api.KeyringResponse{wan, lan}, nil
}

func (f *fakeCluster) Members(_ context.Context, wan bool) ([]*api.AgentMember, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("members"); err != nil {
		return nil, err
	}
	var out []*api.AgentMember
	for _, m := range f.members {
		if wan && !m.server {
			continue
		}
		am := &api.AgentMember{Name: m.name, Status: 1, Tags: map[string]string{"dc": m.dc}}
		if wan {
			am.Name = m.name + "." + m.dc
		}
		if !m.alive {
			am.Status = 4
		}
		out = append(out, am)
	}
	return out, nil
}

// state summarises every member: name, alive, sorted key owners, primary.
func (f *fakeCluster) keysOf(name string) (keys []string, primary string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.member(name)
	keys = slices.Clone(m.keys)
	sort.Strings(keys)
	return keys, m.primary
}

func (f *fakeCluster) setAlive(name string, alive bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.member(name).alive = alive
}
