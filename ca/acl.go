package ca

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"
)

// ACL tokens live in the state directory under acl/: tokens.json holds the
// token of every agent and every service (proxy) mtlsctl renders, made here
// so that the files can be rendered before Consul knows them; the
// management token (management.token) is Consul's answer to the one ACL
// bootstrap and is the key to the cluster: 0600, never printed.
const (
	aclDir         = "acl"
	aclTokensFile  = "tokens.json"
	managementFile = "management.token"
)

// ErrNoManagementToken means the ACL system has not been bootstrapped from
// this state directory.
var ErrNoManagementToken = errors.New("no ACL management token")

// ACLToken is a Consul ACL token as mtlsctl creates it: both IDs are chosen
// here (random UUIDs) and given to Consul on create. SecretID is the secret.
type ACLToken struct {
	AccessorID string `json:"accessor_id"`
	SecretID   string `json:"secret_id"`
}

// NodeTokens are one node's tokens: its agent's, and one per service it
// registers (keyed by service ID), which the service's proxy uses too.
type NodeTokens struct {
	Agent    ACLToken            `json:"agent"`
	Services map[string]ACLToken `json:"services,omitempty"`
}

// ACLTokens are every token mtlsctl made for the cluster.
type ACLTokens struct {
	Nodes map[string]*NodeTokens `json:"nodes"`
	// Replication is the secondary datacenters' servers' token (multi-DC
	// only): their Connect CA is signed by the primary and intentions are
	// replicated from it with this token.
	Replication *ACLToken `json:"replication,omitempty"`
	// Retired are tokens replaced by `rotate tokens` or no longer needed,
	// which Consul may still hold: the next apply (or the rotation itself,
	// once every node uses the new ones) deletes them there and here.
	Retired []ACLToken `json:"retired,omitempty"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidToken reports whether s has the form of a Consul token ID (a
// lower-case UUID).
func ValidToken(s string) bool { return uuidRE.MatchString(s) }

// NewACLToken makes a token with random accessor and secret IDs (UUID v4,
// never in Consul's reserved 00000000- prefix).
func NewACLToken(r io.Reader) (ACLToken, error) {
	if r == nil {
		r = rand.Reader
	}
	a, err := newUUID(r)
	if err != nil {
		return ACLToken{}, err
	}
	s, err := newUUID(r)
	if err != nil {
		return ACLToken{}, err
	}
	return ACLToken{AccessorID: a, SecretID: s}, nil
}

func newUUID(r io.Reader) (string, error) {
	for {
		var b [16]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("random token: %w", err)
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		s := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
		if !strings.HasPrefix(s, "00000000-") {
			return s, nil
		}
	}
}

// Ensure gives every node in want a token for its agent and one for each of
// its service IDs, and a replication token when replication is set,
// keeping the tokens it has. Tokens of nodes and services no longer wanted
// (and a replication token no longer needed) move to Retired. It reports
// whether anything changed.
func (t *ACLTokens) Ensure(want map[string][]string, replication bool, r io.Reader) (bool, error) {
	if t.Nodes == nil {
		t.Nodes = map[string]*NodeTokens{}
	}
	changed := false
	switch {
	case replication && t.Replication == nil:
		tok, err := NewACLToken(r)
		if err != nil {
			return false, err
		}
		t.Replication, changed = &tok, true
	case !replication && t.Replication != nil:
		t.Retired = append(t.Retired, *t.Replication)
		t.Replication, changed = nil, true
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		nt := t.Nodes[name]
		if nt == nil {
			tok, err := NewACLToken(r)
			if err != nil {
				return false, err
			}
			nt = &NodeTokens{Agent: tok}
			t.Nodes[name] = nt
			changed = true
		}
		if nt.Services == nil {
			nt.Services = map[string]ACLToken{}
		}
		keep := map[string]bool{}
		for _, id := range want[name] {
			keep[id] = true
			if _, ok := nt.Services[id]; ok {
				continue
			}
			tok, err := NewACLToken(r)
			if err != nil {
				return false, err
			}
			nt.Services[id] = tok
			changed = true
		}
		for id, tok := range nt.Services {
			if !keep[id] {
				t.Retired = append(t.Retired, tok)
				delete(nt.Services, id)
				changed = true
			}
		}
	}
	for name, nt := range t.Nodes {
		if _, ok := want[name]; ok {
			continue
		}
		t.Retired = append(t.Retired, nt.Agent)
		for _, tok := range nt.Services {
			t.Retired = append(t.Retired, tok)
		}
		delete(t.Nodes, name)
		changed = true
	}
	return changed, nil
}

// Renew replaces every agent and service token with a new one; the old
// ones move to Retired (`rotate tokens`).
func (t *ACLTokens) Renew(r io.Reader) error {
	if t.Replication != nil {
		tok, err := NewACLToken(r)
		if err != nil {
			return err
		}
		t.Retired = append(t.Retired, *t.Replication)
		t.Replication = &tok
	}
	for _, nt := range t.Nodes {
		tok, err := NewACLToken(r)
		if err != nil {
			return err
		}
		t.Retired = append(t.Retired, nt.Agent)
		nt.Agent = tok
		for id, old := range nt.Services {
			tok, err := NewACLToken(r)
			if err != nil {
				return err
			}
			t.Retired = append(t.Retired, old)
			nt.Services[id] = tok
		}
	}
	return nil
}

// Count is the number of tokens in use (agents and services).
func (t *ACLTokens) Count() int {
	n := 0
	if t.Replication != nil {
		n++
	}
	for _, nt := range t.Nodes {
		n += 1 + len(nt.Services)
	}
	return n
}

func (t *ACLTokens) validate() error {
	check := func(where string, tok ACLToken) error {
		if !ValidToken(tok.AccessorID) || !ValidToken(tok.SecretID) {
			return fmt.Errorf("%s: not a token (two UUIDs)", where)
		}
		return nil
	}
	for name, nt := range t.Nodes {
		if nt == nil {
			return fmt.Errorf("node %s: no tokens", name)
		}
		if err := check("node "+name+" agent", nt.Agent); err != nil {
			return err
		}
		for id, tok := range nt.Services {
			if err := check("node "+name+" service "+id, tok); err != nil {
				return err
			}
		}
	}
	if t.Replication != nil {
		if err := check("replication", *t.Replication); err != nil {
			return err
		}
	}
	for i, tok := range t.Retired {
		if err := check(fmt.Sprintf("retired[%d]", i), tok); err != nil {
			return err
		}
	}
	return nil
}

// ACLTokens loads the tokens (empty, not an error, when there are none yet).
func (s *State) ACLTokens() (*ACLTokens, error) {
	p := s.path(aclDir, aclTokensFile)
	data, err := readSecret(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &ACLTokens{Nodes: map[string]*NodeTokens{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var t ACLTokens
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%w: %s: not valid JSON: restore it from a backup, or remove it and run `mtlsctl generate` then `mtlsctl rotate tokens`", ErrCorrupt, p)
	}
	if t.Nodes == nil {
		t.Nodes = map[string]*NodeTokens{}
	}
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w: restore it from a backup", ErrCorrupt, p, err)
	}
	return &t, nil
}

// SetACLTokens stores the tokens (0600, atomically).
func (s *State) SetACLTokens(t *ACLTokens) error {
	if err := t.validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return writeBatch(s.dir, []pendingFile{{path: s.path(aclDir, aclTokensFile), data: append(data, '\n'), mode: secretMode}})
}

// ManagementTokenFile is where the management token is kept, for operators
// and scripts (CONSUL_HTTP_TOKEN_FILE).
func (s *State) ManagementTokenFile() string { return s.path(aclDir, managementFile) }

// ManagementToken returns the management token (ErrNoManagementToken when
// the ACL system was not bootstrapped from this state).
func (s *State) ManagementToken() (string, error) {
	p := s.ManagementTokenFile()
	data, err := readSecret(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s does not exist", ErrNoManagementToken, p)
	}
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if !ValidToken(tok) {
		return "", fmt.Errorf("%w: %s does not hold a token (one UUID): restore it from a backup", ErrCorrupt, p)
	}
	return tok, nil
}

// SetManagementToken stores the management token (0600, atomically). It is
// called the moment Consul hands the token out: the bootstrap cannot be
// repeated, so losing it would lock mtlsctl out of the cluster.
func (s *State) SetManagementToken(tok string) error {
	if !ValidToken(tok) {
		return errors.New("management token: not a token (one UUID)")
	}
	return writeBatch(s.dir, []pendingFile{{path: s.ManagementTokenFile(), data: []byte(tok + "\n"), mode: secretMode}})
}

// RemoveManagementToken forgets the management token (after uninstall
// deleted what it made, the token is kept unless asked: see the caller).
func (s *State) RemoveManagementToken() error {
	err := os.Remove(s.ManagementTokenFile())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(s.path(aclDir))
}
