package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeys checks host keys against known_hosts files (hashed entries,
// @cert-authority and @revoked lines included) and, when allowed, records
// unknown hosts in writeFile.
type hostKeys struct {
	files     []string // candidate files; missing ones are skipped
	writeFile string   // where new keys are appended
	accept    bool

	mu sync.Mutex
	cb ssh.HostKeyCallback
}

func newHostKeys(files []string, writeFile string, accept bool) (*hostKeys, error) {
	h := &hostKeys{files: files, writeFile: writeFile, accept: accept}
	if err := h.load(); err != nil {
		return nil, err
	}
	return h, nil
}

// load (re)reads the files; h.mu must be held or h not yet shared.
func (h *hostKeys) load() error {
	var existing []string
	seen := map[string]bool{}
	for _, f := range h.files {
		if f == "" || seen[f] {
			continue
		}
		seen[f] = true
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		}
	}
	cb, err := knownhosts.New(existing...)
	if err != nil {
		return fmt.Errorf("known_hosts: %w (fix or remove the bad lines)", err)
	}
	h.cb = cb
	return nil
}

func (h *hostKeys) current() ssh.HostKeyCallback {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cb
}

// knownTypes returns the key types known_hosts holds as plain keys for addr,
// so that the client can ask the server for one of those first.
func (h *hostKeys) knownTypes(addr string) []string {
	probe := probeKey{}
	err := h.current()(addr, dummyAddr(addr), probe)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var types []string
	for _, k := range ke.Want {
		types = append(types, k.Key.Type())
	}
	return types
}

// callback returns the HostKeyCallback for one node. The error it returns is
// also stored in *got, because the SSH library wraps it. note is added to
// an unknown-host error. The hostname it is called with is the name to look
// up and record (host:port, or the HostKeyAlias).
func (h *hostKeys) callback(node, note string, got *error) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := h.check(node, note, hostname, remote, key)
		*got = err
		return err
	}
}

func (h *hostKeys) check(node, note, hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := h.current()(hostname, remote, key)
	if err == nil {
		return nil
	}
	offered := fmt.Sprintf("%s key %s", key.Type(), ssh.FingerprintSHA256(key))
	name := knownhosts.Normalize(hostname) // as known_hosts spells it
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		return fmt.Errorf("%w: %s (%s) offered %s, which %s:%d marks @revoked; mtlsctl will not connect",
			ErrHostKeyMismatch, node, name, offered, re.Revoked.Filename, re.Revoked.Line)
	case errors.As(err, &ke) && len(ke.Want) > 0:
		var known []string
		for _, w := range ke.Want {
			known = append(known, fmt.Sprintf("%s %s at %s:%d", w.Key.Type(), ssh.FingerprintSHA256(w.Key), w.Filename, w.Line))
		}
		return fmt.Errorf("%w: %s (%s) offered %s, but known_hosts has %s. "+
			"This may be an attack; if the host was really reinstalled, remove that line (ssh-keygen -R %s) and verify the new key. "+
			"No option overrides a changed host key",
			ErrHostKeyMismatch, node, name, offered, strings.Join(known, "; "), name)
	case errors.As(err, &ke):
		if !h.accept {
			return fmt.Errorf("%w: %s (%s) is not in known_hosts (%s); it offered %s. "+
				"Check the fingerprint, then rerun with --accept-new-host-keys to record it in %s%s",
				ErrUnknownHost, node, name, strings.Join(h.files, ", "), offered, h.writeFile, note)
		}
		if _, isCert := key.(*ssh.Certificate); isCert {
			return fmt.Errorf("%w: %s (%s) offered a host certificate (%s) from an authority known_hosts does not list; add a @cert-authority line",
				ErrUnknownHost, node, name, offered)
		}
		return h.record(hostname, key)
	case strings.Contains(err.Error(), "no authorities for hostname"):
		return fmt.Errorf("%w: %s (%s) offered a host certificate (%s) signed by an authority known_hosts does not trust for this host; add a @cert-authority line",
			ErrUnknownHost, node, name, offered)
	default:
		return fmt.Errorf("%w: %s (%s) offered %s: %v", ErrHostKeyMismatch, node, name, offered, err)
	}
}

// record appends the key to writeFile (created 0600, in a 0700 directory)
// and reloads. One line is written with one append, then fsynced.
func (h *hostKeys) record(hostname string, key ssh.PublicKey) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Another node sharing the address may have recorded it meanwhile.
	if err := h.cb(hostname, dummyAddr(hostname), key); err == nil {
		return nil
	}
	if h.writeFile == "" {
		return fmt.Errorf("%w: no known_hosts file to record %s in", ErrUnknownHost, hostname)
	}
	if err := os.MkdirAll(filepath.Dir(h.writeFile), 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	f, err := os.OpenFile(h.writeFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key) + "\n"
	_, werr := f.WriteString(line)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("record host key in %s: %w", h.writeFile, werr)
	}
	if !containsString(h.files, h.writeFile) {
		h.files = append(h.files, h.writeFile)
	}
	return h.load()
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dummyAddr turns "host:port" into a net.Addr for the known_hosts lookup,
// which matches on IPs as well as names.
func dummyAddr(hostport string) net.Addr {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return &net.TCPAddr{}
	}
	a := &net.TCPAddr{IP: net.ParseIP(host)}
	fmt.Sscan(port, &a.Port)
	return a
}

// probeKey is a key no known_hosts line holds; looking it up lists the keys
// known for a host.
type probeKey struct{}

func (probeKey) Type() string                        { return "mtlsctl-probe" }
func (probeKey) Marshal() []byte                     { return []byte("\x00\x00\x00\x0dmtlsctl-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

// hostKeyAlgorithms orders the algorithms so that the server presents a key
// type known_hosts already holds (OpenSSH does the same); with no plain key
// known, certificates come first so @cert-authority works.
func hostKeyAlgorithms(known []string) []string {
	all := ssh.SupportedAlgorithms().HostKeys
	if len(known) == 0 {
		return nil // library default: certificates first
	}
	var out []string
	add := func(a string) {
		if !containsString(out, a) && containsString(all, a) {
			out = append(out, a)
		}
	}
	for _, t := range known {
		switch t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			add(ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	for _, a := range all {
		add(a)
	}
	return out
}
