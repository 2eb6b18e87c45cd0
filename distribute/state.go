package distribute

import (
	"bufio"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mtlsctl/mtlsctl/consulcfg"
)

// remoteFile is what a node holds at one path, read on the node.
type remoteFile struct {
	Exists  bool
	Regular bool
	// Link is set when the path is a symbolic link: its target as the
	// link names it ("?" when it holds a tab or newline). A link is never
	// hashed, stat'ed or read through.
	Link   string
	SHA256 string
	Mode   fs.FileMode
	Owner  string
	Group  string
	// Size is a regular file's size in bytes (-1 when unknown).
	Size int64
}

// manifest is mtlsctl's record, on the node, of what it last committed.
type manifest struct {
	Generation string         `json:"generation"`
	Files      []manifestFile `json:"files"`
	// Mesh is the bundle's mesh (proxies, firewall), nil when off.
	Mesh *consulcfg.Mesh `json:"mesh,omitempty"`
}

type manifestFile struct {
	Path   string         `json:"path"`
	SHA256 string         `json:"sha256"`
	Mode   string         `json:"mode"`
	Owner  string         `json:"owner,omitempty"`
	Group  string         `json:"group,omitempty"`
	Kind   consulcfg.Kind `json:"kind"`
}

// LockInfo describes a node lock: who holds it and since when, and what
// this admin machine can tell about that holder.
type LockInfo struct {
	RunID  string    `json:"run_id"`
	Holder string    `json:"holder"` // user@host pid N
	Host   string    `json:"host,omitempty"`
	PID    int       `json:"pid,omitempty"`
	Op     string    `json:"op,omitempty"`
	Since  time.Time `json:"since,omitempty"`
	// Stale is set when the lock is older than Options.LockTTL: its holder
	// probably died. It is still never taken without ForceUnlock.
	Stale bool `json:"stale,omitempty"`
	// Note says whether the holder still runs, when this machine can tell,
	// and how the lock can be taken over.
	Note string `json:"note,omitempty"`

	procSpace string // the holder's process space (see procIdentity)
	start     string // the holder's start time (see procStart)
}

func (l *LockInfo) String() string {
	if l.Note == "" {
		return l.holder()
	}
	return l.holder() + "; " + l.Note
}

// holder is "held by WHO (run R, OP, since T)".
func (l *LockInfo) holder() string {
	s := fmt.Sprintf("held by %s (run %s", l.Holder, l.RunID)
	if l.Op != "" {
		s += ", " + l.Op
	}
	if !l.Since.IsZero() {
		s += ", since " + l.Since.UTC().Format(time.RFC3339)
	}
	return s + ")"
}

// note is LockInfo.Note: what is known about the holder and what to do.
func (l *LockInfo) note() string {
	switch state, why := l.assess(); state {
	case holderRunning:
		return "that run is still going on this machine"
	case holderGone:
		return fmt.Sprintf("that run is over (%s): --force-unlock takes the lock over", why)
	case holderElsewhere:
		if l.Stale {
			return "it looks stale (its holder probably died); " + elsewhereAdvice(l)
		}
	}
	return ""
}

// remoteState is everything one inspect script reports.
type remoteState struct {
	Files      map[string]*remoteFile
	Gossip     map[string]string // path -> sha256 of the "encrypt" value
	Generation string
	Manifest   *manifest
	Lock       *LockInfo
	// Backups is the number of backup generations under the node state
	// directory's backup/.
	Backups int
	// Units maps a unit to `systemctl is-active`'s answer.
	Units map[string]string
	// Hooked says whether mtlsctl's chains are jumped to ("filter", "nat").
	Hooked map[string]bool
	// Unread lists the node state files (and lock) the node refused to
	// read, each with why: a symbolic link, not a regular file, or larger
	// than maxStateBytes. Each is taken as absent; apply replaces it.
	Unread []string
}

func (r *remoteState) file(p string) *remoteFile {
	if f, ok := r.Files[p]; ok {
		return f
	}
	return &remoteFile{}
}

func parseInspect(out string, ttl time.Duration) (*remoteState, error) {
	r := &remoteState{Files: map[string]*remoteFile{}, Gossip: map[string]string{}, Units: map[string]string{}, Hooked: map[string]bool{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var order []string // regular files, in the order of the SUMS and STAT lines
	section, idx := "", 0
	for sc.Scan() {
		line := sc.Text()
		switch line {
		case "SUMS", "STAT", "END":
			section, idx = line, 0
			continue
		}
		if section == "SUMS" || section == "STAT" {
			if idx < len(order) {
				f := r.Files[order[idx]]
				if section == "SUMS" {
					if sum := strings.Fields(line); len(sum) > 0 && sum[0] != "-" {
						f.SHA256 = strings.TrimPrefix(sum[0], "\\")
					}
				} else if st := strings.Fields(line); len(st) >= 3 {
					if m, err := strconv.ParseUint(st[0], 8, 32); err == nil {
						f.Mode = fs.FileMode(m)
					}
					f.Owner, f.Group = st[1], st[2]
					if len(st) >= 4 {
						if n, err := strconv.ParseInt(st[3], 10, 64); err == nil {
							f.Size = n
						}
					}
				}
			}
			idx++
			continue
		}
		fields := strings.Split(line, "\t")
		switch fields[0] {
		case "F":
			if len(fields) >= 2 {
				order = append(order, fields[1])
				if _, dup := r.Files[fields[1]]; !dup {
					r.Files[fields[1]] = &remoteFile{Exists: true, Regular: true, Size: -1}
				} else {
					// The same path listed twice (bundle and manifest): both
					// entries point at one record.
					r.Files[fields[1]].Exists, r.Files[fields[1]].Regular = true, true
				}
			}
		case "K":
			if len(fields) >= 3 {
				r.Files[fields[1]] = &remoteFile{Exists: true, Link: printable(fields[2])}
			}
		case "Q":
			if len(fields) >= 3 {
				r.Unread = append(r.Unread, fields[1]+" "+printable(fields[2]))
			}
		case "X":
			if len(fields) >= 2 {
				r.Files[fields[1]] = &remoteFile{Exists: true}
			}
		case "N":
			if len(fields) >= 2 {
				r.Files[fields[1]] = &remoteFile{}
			}
		case "E":
			if len(fields) >= 3 {
				r.Gossip[fields[1]] = fields[2]
			}
		case "G":
			if len(fields) >= 2 {
				r.Generation = strings.TrimSpace(fields[1])
			}
		case "J":
			if len(fields) >= 2 {
				var m manifest
				if err := json.Unmarshal([]byte(fields[1]), &m); err == nil {
					r.Manifest = &m
				}
			}
		case "L":
			if len(fields) >= 3 {
				r.Lock = parseLock(fields[1], fields[2], ttl)
			}
		case "B":
			if len(fields) >= 2 {
				r.Backups, _ = strconv.Atoi(fields[1])
			}
		case "U":
			if len(fields) >= 3 {
				r.Units[fields[1]] = fields[2]
			}
		case "W":
			if len(fields) >= 3 {
				r.Hooked[fields[1]] = fields[2] == "1"
			}
		}
	}
	return r, sc.Err()
}

// printable replaces control characters in text a node chose (a link's
// target) so that showing it cannot drive the admin's terminal, and
// shortens it.
func printable(s string) string {
	const max = 256
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	if s == "" {
		return "?"
	}
	return s
}

// lockInfoText is what a lock's info file holds: run, holder, pid, time
// and op, then, when known (not ""), the holder's process space and start
// time (procIdentity, procStart), which let a later run on the same
// machine tell whether the holder still runs.
func lockInfoText(runID, user, host string, pid int, op string, now time.Time, space, start string) string {
	s := fmt.Sprintf("run=%s holder=%s@%s pid=%d time=%s op=%s", runID, user, host, pid, now.UTC().Format(time.RFC3339), op)
	if space != "" && start != "" {
		s += fmt.Sprintf(" procspace=%s start=%s", space, start)
	}
	return s
}

func parseLock(run, info string, ttl time.Duration) *LockInfo {
	l := &LockInfo{RunID: strings.TrimSpace(run), Holder: "unknown"}
	var pid string
	for _, kv := range strings.Fields(info) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "holder":
			l.Holder = v
			if _, host, ok := strings.Cut(v, "@"); ok {
				l.Host = host
			}
		case "pid":
			pid = v
			l.PID, _ = strconv.Atoi(v)
		case "time":
			l.Since, _ = time.Parse(time.RFC3339, v)
		case "op":
			l.Op = v
		case "procspace":
			l.procSpace = v
		case "start":
			l.start = v
		}
	}
	if pid != "" {
		l.Holder += " pid " + pid
	}
	if !l.Since.IsZero() && ttl > 0 && time.Since(l.Since) > ttl {
		l.Stale = true
	}
	l.Note = l.note()
	return l
}

// certFingerprint is the fingerprint of the first certificate in a PEM
// bundle, as the state and `openssl x509 -fingerprint -sha256` show it.
func certFingerprint(pemData []byte) string {
	c := firstCert(pemData)
	if c == nil {
		return ""
	}
	return fingerprint.Cert(c.Raw)
}

func firstCert(pemData []byte) *x509.Certificate {
	for {
		var blk *pem.Block
		blk, pemData = pem.Decode(pemData)
		if blk == nil {
			return nil
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
}

// GossipFingerprint is how mtlsctl shows a gossip key (fingerprint.Gossip).
// Nodes compute the same on their side, so the key never crosses the wire
// for status.
func GossipFingerprint(key string) string { return fingerprint.Gossip(key) }

func gossipFP(hexSum string) string {
	if len(hexSum) < 16 {
		return ""
	}
	return "sha256:" + hexSum[:16]
}

// stateFiles builds the node-state files that record a bundle: the
// manifest (JSON, and sha256sum format for `sha256sum -c`) and the
// generation, which is written last.
func stateFiles(b *consulcfg.Bundle, stateDir string) []consulcfg.File {
	m := manifest{Generation: b.Generation, Mesh: b.Mesh}
	var sums strings.Builder
	for _, f := range b.Files {
		m.Files = append(m.Files, manifestFile{Path: f.Path, SHA256: f.SHA256, Mode: fmt.Sprintf("%04o", f.Mode.Perm()),
			Owner: f.Owner, Group: f.Group, Kind: f.Kind})
		fmt.Fprintf(&sums, "%s  %s\n", f.SHA256, f.Path)
	}
	js, _ := json.Marshal(m) // plain data: cannot fail
	mk := func(name string, content []byte) consulcfg.File {
		return consulcfg.NewFile(path.Join(stateDir, name), content, 0o600, consulcfg.KindOther)
	}
	return []consulcfg.File{
		mk(manifestJSON, append(js, '\n')),
		mk(manifestSums, []byte(sums.String())),
		mk(genFile, []byte(b.Generation+"\n")),
	}
}

// checkBundle rejects a bundle distribute cannot move safely.
func checkBundle(b *consulcfg.Bundle, stateDir string) error {
	if b.Generation == "" {
		return fmt.Errorf("bundle for node %s has no generation (call Seal)", b.Node)
	}
	seen := map[string]bool{}
	for _, f := range b.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return fmt.Errorf("bundle for node %s: file path %q must be absolute and clean", b.Node, f.Path)
		}
		if strings.ContainsFunc(f.Path, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
			return fmt.Errorf("bundle for node %s: file path %q contains a control character or backslash", b.Node, f.Path)
		}
		if seen[f.Path] {
			return fmt.Errorf("bundle for node %s: file %s listed twice", b.Node, f.Path)
		}
		seen[f.Path] = true
		if reservedStatePath(f.Path, stateDir) {
			return fmt.Errorf("bundle for node %s: file %s would overwrite mtlsctl's own node state (%s)", b.Node, f.Path, stateDir)
		}
		sum := sha256.Sum256(f.Content)
		if hex.EncodeToString(sum[:]) != f.SHA256 {
			return fmt.Errorf("bundle for node %s: file %s: SHA256 field does not match its content (build files with consulcfg.NewFile)", b.Node, f.Path)
		}
	}
	return nil
}

// reservedStatePath reports whether p is one of the entries distribute keeps
// in the node state directory (manifest, generation, lock, backups). Other
// files there, such as the rendered firewall rules, are bundle files like any.
func reservedStatePath(p, stateDir string) bool {
	rel, ok := strings.CutPrefix(p, path.Clean(stateDir)+"/")
	if !ok {
		return false
	}
	first, _, _ := strings.Cut(rel, "/")
	switch first {
	case manifestJSON, manifestSums, genFile, lockDir, backupDir:
		return true
	}
	return strings.HasPrefix(first, ".mtlsctl-")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
