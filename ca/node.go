package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
	"golang.org/x/sys/unix"
)

// issuedSpec is nodes/<node>/spec.json: the spec a leaf was issued for and
// what identifies the result, so that a re-run can tell what changed.
type issuedSpec struct {
	LeafSpec
	KeyType         string    `json:"key_type,omitempty"`
	CAFingerprint   string    `json:"ca_fingerprint"`
	CertFingerprint string    `json:"cert_fingerprint"`
	Serial          string    `json:"serial"`
	NotAfter        time.Time `json:"not_after"`
}

// storedLeaf is a node's leaf as found in the state directory.
type storedLeaf struct {
	leaf *Leaf
	rec  issuedSpec
	// broken says why the files do not form a consistent set (an
	// interrupted write); "" when they do.
	broken string
}

func (s *State) nodeDir(node string) string { return s.path(nodesDir, node) }

// readLeaf reads nodes/<node>. It returns nil, nil when the node has no
// files at all; files that are present but unreadable or corrupt are an
// error (never silently replaced); a partial or inconsistent set, which an
// interrupted write can leave, is reported in broken.
func (s *State) readLeaf(node string) (*storedLeaf, error) {
	dir := s.nodeDir(node)
	certPath, keyPath, specPath := dir+"/"+certFile, dir+"/"+keyFile, dir+"/"+specFile
	// One lookup of the directory: a node without one (every node, on a
	// first generate) costs one failed open, not three.
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil, nil
	} else if err != nil {
		return nil, &NodeError{Node: node, Err: &fs.PathError{Op: "open", Path: dir, Err: err}}
	}
	certData, certErr := readFileAt(dfd, certFile, certPath, false)
	keyData, keyErr := readFileAt(dfd, keyFile, keyPath, true)
	specData, specErr := readFileAt(dfd, specFile, specPath, false)
	unix.Close(dfd)
	var missing []string
	for _, f := range []struct {
		name string
		err  error
	}{{certFile, certErr}, {keyFile, keyErr}, {specFile, specErr}} {
		switch {
		case errors.Is(f.err, fs.ErrNotExist):
			missing = append(missing, f.name)
		case f.err != nil:
			return nil, &NodeError{Node: node, Err: f.err}
		}
	}
	if len(missing) == 3 {
		return nil, nil
	}
	if len(missing) > 0 {
		return &storedLeaf{broken: "incomplete: " + strings.Join(missing, ", ") + " missing"}, nil
	}
	hint := fmt.Sprintf("remove %s and run `mtlsctl generate` to issue a new certificate", dir)
	cert, err := parseCert(certData)
	if err != nil {
		return nil, &NodeError{Node: node, Err: fmt.Errorf("%w: %s: %v: %s", ErrCorrupt, certPath, err, hint)}
	}
	key, err := parseKey(keyData)
	if err != nil {
		return nil, &NodeError{Node: node, Err: fmt.Errorf("%w: %s: %v: %s", ErrCorrupt, keyPath, err, hint)}
	}
	var rec issuedSpec
	if err := json.Unmarshal(specData, &rec); err != nil {
		return nil, &NodeError{Node: node, Err: fmt.Errorf("%w: %s: %v: %s", ErrCorrupt, specPath, err, hint)}
	}
	st := &storedLeaf{rec: rec, leaf: &Leaf{CertPEM: certData, KeyPEM: keyData, Cert: cert, Spec: rec.LeafSpec}}
	switch {
	case !keyMatches(key, cert.PublicKey):
		st.broken = "key.pem does not match cert.pem (interrupted write)"
	case rec.CertFingerprint != CertFingerprint(cert.Raw):
		st.broken = "spec.json does not describe cert.pem (interrupted write)"
	}
	return st, nil
}

// specChange describes how want differs from what a leaf was issued for
// ("" when it does not). Days is not compared: it only applies to the next
// issue.
func specChange(had, want LeafSpec) string {
	var why []string
	if had.Node != want.Node {
		why = append(why, fmt.Sprintf("node name changed: %s → %s", had.Node, want.Node))
	}
	if had.Datacenter != want.Datacenter {
		why = append(why, fmt.Sprintf("datacenter changed: %s → %s", had.Datacenter, want.Datacenter))
	}
	if had.Domain != want.Domain {
		why = append(why, fmt.Sprintf("domain changed: %s → %s", had.Domain, want.Domain))
	}
	if had.Server != want.Server {
		why = append(why, fmt.Sprintf("role changed: %s → %s", role(had.Server), role(want.Server)))
	}
	if !slices.Equal(had.Addresses, want.Addresses) {
		why = append(why, fmt.Sprintf("addresses changed: [%s] → [%s]", strings.Join(had.Addresses, " "), strings.Join(want.Addresses, " ")))
	}
	return strings.Join(why, "; ")
}

func role(server bool) string {
	if server {
		return "server"
	}
	return "client"
}

// staleness says why a consistent stored leaf no longer fits want under c
// ("" when it does). renew is how long before expiry to reissue.
func (st *storedLeaf) staleness(want LeafSpec, c *CA, now time.Time, renew time.Duration) string {
	if why := specChange(st.rec.LeafSpec, want); why != "" {
		return why
	}
	cert := st.leaf.Cert
	// The recorded CA fingerprint and the key-ID linkage identify the
	// issuer; a signature check would double the cost of a re-run for
	// files only mtlsctl writes.
	if st.rec.CAFingerprint != c.Fingerprint() || !bytes.Equal(cert.AuthorityKeyId, c.Cert.SubjectKeyId) {
		return fmt.Sprintf("issued by another CA (%s), not the current one (%s)", short(st.rec.CAFingerprint), short(c.Fingerprint()))
	}
	left := cert.NotAfter.Sub(now)
	// A leaf is never issued past the CA's expiry: when the CA itself is
	// about to expire, reissuing would not help (and would repeat on every
	// run), so only renew when the new leaf would last longer.
	if left < renew && cert.NotAfter.Before(c.Cert.NotAfter.Add(-24*time.Hour)) {
		if left <= 0 {
			return fmt.Sprintf("expired on %s", cert.NotAfter.Format(time.DateOnly))
		}
		return fmt.Sprintf("expires on %s (in %d days, renewing %d days ahead)", cert.NotAfter.Format(time.DateOnly), daysLeft(cert.NotAfter, now), int(renew.Hours()/24))
	}
	return ""
}

func short(fp string) string {
	if len(fp) > 23 {
		return fp[:23] + "…"
	}
	return fp
}

// leafWrites lists the files that store l, key first, spec last: a crash
// part way leaves a set that readLeaf reports as broken, and the next run
// reissues.
func (s *State) leafWrites(l *Leaf, c *CA, keyType string) []pendingFile {
	rec := issuedSpec{
		LeafSpec:        l.Spec,
		KeyType:         cmp(keyType, KeyECDSAP256),
		CAFingerprint:   c.Fingerprint(),
		CertFingerprint: l.Fingerprint(),
		Serial:          serialHex(l.Cert),
		NotAfter:        l.Cert.NotAfter,
	}
	spec, _ := json.MarshalIndent(rec, "", "  ")
	dir := s.nodeDir(l.Spec.Node)
	return []pendingFile{
		{path: dir + "/" + keyFile, data: l.KeyPEM, mode: secretMode},
		{path: dir + "/" + certFile, data: l.CertPEM, mode: publicMode},
		{path: dir + "/" + specFile, data: append(spec, '\n'), mode: publicMode},
	}
}

// NodeError is the program's one per-node error type (inventory.NodeError).
type NodeError = inventory.NodeError

// storedNodes lists the node directories in nodes/ (sorted; hidden entries
// such as nodes/.removed are skipped).
func (s *State) storedNodes() ([]string, error) {
	entries, err := os.ReadDir(s.path(nodesDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// archiveRemoved moves the directory of each removed node (nodes/<node>)
// to nodes/.archive/<node>-<UTC time of at>, one rename each, so that a
// node removed from the cluster file no longer counts as the cluster's
// (expiry checks, listings) while its key material is kept, never deleted.
// Generate calls it last, once everything else is written: an interrupted
// run leaves the node either in place (the next run archives it) or
// archived. It returns where each went.
func (s *State) archiveRemoved(nodes []string, at time.Time) ([]ArchivedNode, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	root := s.path(nodesDir, nodeArchiveDir)
	if err := os.Mkdir(root, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("archive removed nodes: %w", err)
	}
	// Mkdir is subject to the umask, and an existing one may be looser:
	// it holds private keys.
	if err := os.Chmod(root, dirMode); err != nil {
		return nil, fmt.Errorf("archive removed nodes: %w", err)
	}
	stamp := at.UTC().Format("20060102T150405Z")
	var out []ArchivedNode
	for _, n := range nodes {
		from := s.nodeDir(n)
		to := filepath.Join(root, n+"-"+stamp)
		// Never replace an earlier archive of the same node (the same
		// second, or a clock set back): take the next free name.
		for i := 2; ; i++ {
			if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
				break
			} else if err != nil {
				return out, fmt.Errorf("archive removed node %s: %w", n, err)
			}
			to = filepath.Join(root, fmt.Sprintf("%s-%s-%d", n, stamp, i))
		}
		if err := os.Rename(from, to); err != nil {
			return out, &NodeError{Node: n, Err: fmt.Errorf("archive its certificate (no longer in the cluster file): %w; its files stay in %s", err, from)}
		}
		out = append(out, ArchivedNode{Node: n, Path: to})
	}
	// Both directories changed: make the renames durable.
	if err := syncDir(root); err != nil {
		return out, fmt.Errorf("archive removed nodes: %w", err)
	}
	if err := syncDir(s.path(nodesDir)); err != nil {
		return out, fmt.Errorf("archive removed nodes: %w", err)
	}
	return out, nil
}
