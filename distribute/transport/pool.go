package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kevinburke/ssh_config"
	"github.com/mtlsctl/mtlsctl/inventory"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Pool is one command's way to the nodes: it holds one SSH connection per
// node, shared by every step of the command, and the loaded keys and
// known_hosts. It is safe for concurrent use; Close it when done.
type Pool struct {
	o       Options
	topo    *inventory.Topology
	keys    *hostKeys
	sshCfg  *ssh_config.Config
	cfgPath string // the ssh config file read, for messages

	authOnce sync.Once
	signers  []ssh.Signer
	authErr  error
	agentC   net.Conn

	mu       sync.Mutex
	conns    map[string]*Conn
	bmu      sync.Mutex // guards bastions (not held while one connects)
	bastions map[string]*bastionConn
}

// New prepares a pool for the nodes of t. It connects lazily: no node is
// contacted until Conn asks for it.
func New(t *inventory.Topology, o Options) (*Pool, error) {
	if t == nil || t.Cluster == nil {
		return nil, errors.New("transport: no topology (load the cluster file first)")
	}
	o = o.WithDefaults()
	s := &Pool{o: o, topo: t, conns: map[string]*Conn{}, bastions: map[string]*bastionConn{}}
	if err := s.loadSSHConfig(); err != nil {
		return nil, err
	}
	writeFile := s.expand(t.Cluster.SSH.KnownHosts)
	if writeFile == "" {
		writeFile = filepath.Join(o.HomeDir, ".ssh", "known_hosts")
	}
	files := o.KnownHostsFiles
	if files == nil {
		files = []string{writeFile, filepath.Join(o.HomeDir, ".ssh", "known_hosts"), "/etc/ssh/ssh_known_hosts"}
	} else {
		files = append([]string{writeFile}, files...)
	}
	var err error
	if s.keys, err = newHostKeys(files, writeFile, o.AcceptNewHostKeys); err != nil {
		return nil, err
	}
	return s, nil
}

// expand resolves a leading ~/ against HomeDir.
func (s *Pool) expand(p string) string {
	if p == "~" {
		return s.o.HomeDir
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(s.o.HomeDir, p[2:])
	}
	return p
}

func (s *Pool) loadSSHConfig() error {
	if s.o.HomeDir == "" {
		return nil
	}
	p := filepath.Join(s.o.HomeDir, ".ssh", "config")
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ssh config %s: %w", p, err)
	}
	defer f.Close()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		return fmt.Errorf("ssh config %s: %w (fix the file or point HOME elsewhere)", p, err)
	}
	s.sshCfg, s.cfgPath = cfg, p
	return nil
}

func (s *Pool) cfg(alias, key string) string {
	if s.sshCfg == nil {
		return ""
	}
	v, _ := s.sshCfg.Get(alias, key)
	return v
}

// Options returns the pool's options, defaults filled in.
func (s *Pool) Options() Options { return s.o }

// Topology returns the cluster the pool reaches.
func (s *Pool) Topology() *inventory.Topology { return s.topo }

// Report sends a progress event (when a Reporter is set).
func (s *Pool) Report(node, step, msg string, err error) {
	s.ReportEvent(Event{Node: node, Step: step, Msg: msg, Err: err})
}

// ReportEvent sends e, stamped with the time, to the Reporter (if any).
func (s *Pool) ReportEvent(e Event) {
	if s.o.Progress != nil {
		e.Time = time.Now()
		s.o.Progress.Report(e)
	}
}

// Addr is where the node's SSH server is reached (host:port, after
// ~/.ssh/config), for reports.
func (s *Pool) Addr(n *inventory.Node) string { return s.endpoint(n).addr() }

// loadSigners gathers the agent's keys and the identity files' keys, once.
func (s *Pool) loadSigners(ids []string) ([]ssh.Signer, error) {
	s.authOnce.Do(func() {
		if s.o.UseAgent {
			if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
				if c, err := net.DialTimeout("unix", sock, s.o.ConnectTimeout); err == nil {
					s.agentC = c
					if sg, err := agent.NewClient(c).Signers(); err == nil {
						s.signers = append(s.signers, sg...)
					}
				}
			}
		}
		seen := map[string]bool{}
		var missing []string
		for _, f := range ids {
			if seen[f] {
				continue
			}
			seen[f] = true
			sg, err := s.loadIdentity(f)
			if errors.Is(err, os.ErrNotExist) {
				missing = append(missing, f)
				continue
			}
			if err != nil {
				s.authErr = err
				return
			}
			s.signers = append(s.signers, sg)
		}
		if len(s.signers) == 0 {
			s.authErr = fmt.Errorf("%w: no key to offer: no ssh-agent keys and no identity file (looked for %s); set ssh.identity_file or start ssh-agent",
				ErrAuth, strings.Join(missing, ", "))
		}
	})
	return s.signers, s.authErr
}

func (s *Pool) loadIdentity(file string) (ssh.Signer, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	sg, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if s.o.Passphrase == nil {
			return nil, fmt.Errorf("%w: identity file %s is encrypted and no passphrase prompt is available (use ssh-agent)", ErrAuth, file)
		}
		pass, perr := s.o.Passphrase(file)
		if perr != nil {
			return nil, fmt.Errorf("identity file %s: passphrase: %w", file, perr)
		}
		sg, err = ssh.ParsePrivateKeyWithPassphrase(pem, pass)
		for i := range pass {
			pass[i] = 0
		}
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("%w: identity file %s: wrong passphrase", ErrAuth, file)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("identity file %s: cannot parse the private key (%v)", file, errors.Unwrap(err))
	}
	return sg, nil
}

// Conn returns the node's connection, making it on first use: one SSH
// connection per node for the whole command.
func (s *Pool) Conn(ctx context.Context, n *inventory.Node) (*Conn, error) {
	s.mu.Lock()
	c, ok := s.conns[n.Name]
	s.mu.Unlock()
	if ok && !c.Broken() {
		return c, nil
	}
	if ok { // lost (sshd restarted, network blip): reconnect once per call
		c.close()
		s.mu.Lock()
		if s.conns[n.Name] == c {
			delete(s.conns, n.Name)
		}
		s.mu.Unlock()
	}
	e := s.endpoint(n)
	if e.err != nil {
		return nil, e.err
	}
	s.Report(n.Name, "connect", e.user+"@"+e.addr(), nil)
	client, err := s.connect(ctx, n.Name, e)
	if err != nil {
		return nil, err
	}
	c = &Conn{s: s, ep: e, client: client,
		sudo: s.topo.Cluster.SSH.Sudo && e.user != "root"}
	go func() {
		client.Wait()
		c.markBroken()
	}()
	s.mu.Lock()
	if old, ok := s.conns[n.Name]; ok { // lost a race: keep one
		s.mu.Unlock()
		client.Close()
		return old, nil
	}
	s.conns[n.Name] = c
	s.mu.Unlock()
	return c, nil
}

// Close ends every shell and closes every connection.
func (s *Pool) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.close()
	}
	s.bmu.Lock()
	for _, b := range s.bastions {
		b.close()
	}
	s.bastions = map[string]*bastionConn{}
	s.bmu.Unlock()
	if s.agentC != nil {
		s.agentC.Close()
	}
	s.conns = map[string]*Conn{}
}

// ForEach runs fn for every node with at most limit at once (limit <= 0:
// Options.Concurrency) and returns the errors by node name. Nodes start in
// order, so the first node always gets a slot first.
func (s *Pool) ForEach(ctx context.Context, nodes []*inventory.Node, limit int, fn func(context.Context, *inventory.Node) error) map[string]error {
	if limit <= 0 {
		limit = s.o.Concurrency
	}
	sem := make(chan struct{}, limit)
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	for _, n := range nodes {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			mu.Lock()
			errs[n.Name] = ctx.Err()
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, n); err != nil {
				mu.Lock()
				errs[n.Name] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}
