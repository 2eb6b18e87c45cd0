// Package sshsandbox runs an in-process SSH server on loopback that behaves
// enough like a real node for mtlsctl: it serves the "sftp" subsystem over a
// private directory that stands in for the node's file system, and runs
// "exec" requests with the real /bin/sh, telling scripts where the node's
// root is through the MTLSCTL_ROOT environment variable.
//
// It owns nothing but its own root directory and goroutines. It is used by
// the distribute package's tests and by `mtlsctl demo`; it must never be
// exposed beyond 127.0.0.1, and it is not a security boundary: symbolic links
// inside the root and the shell it runs can reach the whole machine. It
// must never import the rest of mtlsctl.
package sshsandbox

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// RootEnv is the environment variable that holds the sandbox root for the
// scripts it runs; scripts prefix every node path with it. It is empty (unset)
// on a real node.
const RootEnv = "MTLSCTL_ROOT"

// Options configures a sandbox server. The zero value is usable except that
// no client can authenticate until AuthorizedKeys is set.
type Options struct {
	// Dir is where the server keeps its root ("Dir/root"), its command shims
	// and its call log. Empty: a new temporary directory, removed by Close.
	Dir string
	// HostKey is the server's host key; nil means a new ed25519 key.
	HostKey ssh.Signer
	// HostCertAuthority, when set, makes the server present a host
	// certificate for HostKey signed by this key, valid for CertPrincipals.
	HostCertAuthority ssh.Signer
	// CertPrincipals are the host names the host certificate is valid for
	// (default 127.0.0.1 and localhost).
	CertPrincipals []string
	// AuthorizedKeys are the client public keys that may log in (any user).
	AuthorizedKeys []ssh.PublicKey
	// Fault is the initial fault injection; see SetFault.
	Fault Fault
	// Port is the loopback port to listen on; 0 picks a free one. Start
	// fails when the port is taken (a caller that wants a stable port
	// tries it first and falls back to 0).
	Port int
}

// Fault makes the server misbehave on purpose, to test how clients cope.
type Fault struct {
	// DenyAuth rejects every authentication attempt.
	DenyAuth bool
	// DropConnections closes every new connection right after accepting it.
	DropConnections bool
	// DropOnWrite closes the whole SSH connection when a client first writes
	// a file over SFTP, as if sshd had been killed during the upload.
	DropOnWrite bool
	// DiskFullAfter, when positive, makes SFTP writes fail with ENOSPC once
	// this many bytes in total have been written through this server.
	DiskFullAfter int64
}

// Server is a running sandbox SSH server.
type Server struct {
	ln       net.Listener
	hostKey  ssh.Signer
	pubKey   ssh.PublicKey // what clients see: the certificate when there is one
	dir      string
	root     string
	binDir   string
	callLog  string
	ownDir   bool
	authKeys map[string]bool

	mu       sync.Mutex
	fault    Fault
	written  int64
	conns    map[net.Conn]bool
	procs    map[*os.Process]bool
	closed   bool
	wg       sync.WaitGroup
	config   *ssh.ServerConfig
	accepts  int
	sessions Sessions
}

// Sessions counts the session channels a server started, by what they ran.
type Sessions struct {
	Exec int // "exec" requests: one command each
	SFTP int // "sftp" subsystem requests
}

// Start starts a server listening on 127.0.0.1 on opts.Port, or on a free
// port when it is 0.
func Start(opts Options) (*Server, error) {
	s := &Server{dir: opts.Dir, fault: opts.Fault, conns: map[net.Conn]bool{}, procs: map[*os.Process]bool{}, authKeys: map[string]bool{}}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "mtlsctl-sandbox-")
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	s.root = filepath.Join(s.dir, "root")
	s.binDir = filepath.Join(s.dir, "bin")
	s.callLog = filepath.Join(s.dir, "calls.log")
	if err := s.writeShims(); err != nil {
		s.cleanupDir()
		return nil, err
	}
	s.hostKey = opts.HostKey
	if s.hostKey == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("sandbox: host key: %w", err)
		}
		if s.hostKey, err = ssh.NewSignerFromKey(priv); err != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("sandbox: host key: %w", err)
		}
	}
	s.pubKey = s.hostKey.PublicKey()
	hostSigner := s.hostKey
	if opts.HostCertAuthority != nil {
		principals := opts.CertPrincipals
		if len(principals) == 0 {
			principals = []string{"127.0.0.1", "localhost"}
		}
		cert := &ssh.Certificate{
			Key:             s.hostKey.PublicKey(),
			Serial:          1,
			CertType:        ssh.HostCert,
			KeyId:           "sandbox",
			ValidPrincipals: principals,
			ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
			ValidBefore:     uint64(time.Now().Add(24 * time.Hour).Unix()),
		}
		if err := cert.SignCert(rand.Reader, opts.HostCertAuthority); err != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("sandbox: sign host certificate: %w", err)
		}
		cs, err := ssh.NewCertSigner(cert, s.hostKey)
		if err != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("sandbox: host certificate: %w", err)
		}
		hostSigner, s.pubKey = cs, cert
	}
	for _, k := range opts.AuthorizedKeys {
		s.authKeys[string(k.Marshal())] = true
	}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.mu.Lock()
			deny := s.fault.DenyAuth
			s.mu.Unlock()
			if deny || !s.authKeys[string(key.Marshal())] {
				return nil, errors.New("permission denied")
			}
			return &ssh.Permissions{}, nil
		},
	}
	s.config.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(opts.Port)))
	if err != nil {
		s.cleanupDir()
		return nil, fmt.Errorf("sandbox: listen: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the TCP port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// HostKey is the public key clients see: the plain host key, or the host
// certificate when the server was started with a HostCertAuthority.
func (s *Server) HostKey() ssh.PublicKey { return s.pubKey }

// Root is the directory that holds the node's file system: node path /x/y
// is Root()/x/y.
func (s *Server) Root() string { return s.root }

// Path maps a node path to the real path under Root.
func (s *Server) Path(nodePath string) string {
	return filepath.Join(s.root, filepath.FromSlash(path.Clean("/"+nodePath)))
}

// SetFault replaces the fault injection for new operations.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.written = 0
	s.mu.Unlock()
}

// Accepts is the number of TCP connections the server has accepted.
func (s *Server) Accepts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepts
}

// Sessions reports how many exec and SFTP sessions the server has started
// (tests use it to bound the remote work one operation costs).
func (s *Server) Sessions() Sessions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// Calls lists the shimmed commands (systemctl, consul) the server's scripts
// ran, one line each ("systemctl reload consul"), oldest first.
func (s *Server) Calls() []string {
	b, err := os.ReadFile(s.callLog)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Close stops the server, drops its connections, kills the commands it
// runs, waits for its goroutines and removes its directory if Start made it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	for p := range s.procs {
		syscall.Kill(-p.Pid, syscall.SIGKILL) // the group Start made for it
		p.Kill()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.cleanupDir()
	return err
}

func (s *Server) cleanupDir() {
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
}

// iptablesJumps makes the iptables stand-in remember jump rules (-I/-A,
// -D, -C with -j), so that a script that checks for a jump or deletes it
// until it is gone behaves as on a node. Everything else succeeds.
const iptablesJumps = `t=filter; op=; chain=; target=
while [ $# -gt 0 ]; do
  case "$1" in
  -t) t=$2; shift ;;
  -I|-A|-D|-C) op=$1; chain=$2; shift ;;
  -j) target=$2; shift ;;
  esac
  shift
done
[ -n "$op" ] && [ -n "$target" ] || exit 0
f="$SANDBOX_CALLS.jumps"; touch "$f"; key="$t $chain $target"
case $op in
-I|-A) grep -qxF "$key" "$f" || printf '%s\n' "$key" >>"$f" ;;
-D) grep -qxF "$key" "$f" || exit 1; grep -vxF "$key" "$f" >"$f.tmp"; mv "$f.tmp" "$f" ;;
-C) grep -qxF "$key" "$f" ;;
esac
`

// ssShim answers the port queries of a proxy restart (`ss ... "sport =
// :PORT"`) as a node whose proxies run would: nothing established, the
// restarted proxy listening (as many listeners as any proxy has) (the sandbox runs no proxy, so the real ss
// would keep the restart waiting for a listener that never comes). Other
// queries (preflight's list of listeners) go to the machine's real ss.
const ssShim = `case "$*" in
*"sport = :"*)
  echo "State Recv-Q Send-Q Local-Address:Port Peer-Address:Port"
  case " $* " in *" -l"*) port=${*##*:}; i=0; while [ $i -lt 1024 ]; do echo "LISTEN 0 128 127.0.0.1:$port 0.0.0.0:*"; i=$((i + 1)); done ;; esac
  exit 0 ;;
esac
for d in /usr/sbin /usr/bin /sbin /bin; do [ -x "$d/ss" ] && exec "$d/ss" "$@"; done
echo "ss: not found" >&2; exit 127
`

// writeShims creates the root and the stand-ins for commands a node has but
// this machine may not: sudo (runs its arguments), systemctl, consul and
// iptables (record the call and succeed; systemctl says every unit is
// active), and ss (see ssShim).
func (s *Server) writeShims() error {
	for _, d := range []string{s.root, s.binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	record := "#!/bin/sh\nprintf '%s\\n' \"$(basename \"$0\") $*\" >> \"$SANDBOX_CALLS\"\n"
	shims := map[string]string{
		"sudo": "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -n|-E|-H) shift;; --) shift; break;; *) break;; esac; done\nexec \"$@\"\n",
		// A recorded unit is always running: the sandbox runs no proxy.
		"systemctl":        record + "case \"$1\" in is-active) echo active;; esac\n",
		"consul":           record,
		"iptables":         record + iptablesJumps,
		"iptables-save":    record,
		"iptables-restore": record + "cat >/dev/null\n",
		"ss":               record + ssShim,
	}
	for name, body := range shims {
		if err := os.WriteFile(filepath.Join(s.binDir, name), []byte(body), 0o755); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	return nil
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.accepts++
		if s.closed || s.fault.DropConnections {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	defer sc.Close()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs)
	}()
	home := "/root"
	if u := sc.User(); u != "root" {
		home = "/home/" + path.Base("/"+u)
	}
	os.MkdirAll(s.Path(home), 0o755)
	var chWG sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() == "direct-tcpip" {
			chWG.Add(1)
			go func() {
				defer chWG.Done()
				s.forward(nc)
			}()
			continue
		}
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		chWG.Add(1)
		go func() {
			defer chWG.Done()
			s.serveSession(sc, ch, creqs, home)
		}()
	}
	chWG.Wait()
}

func (s *Server) serveSession(sc *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request, home string) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "env":
			req.Reply(true, nil)
		case "subsystem":
			if name := parseString(req.Payload); name != "sftp" {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			s.mu.Lock()
			s.sessions.SFTP++
			s.mu.Unlock()
			h := &fsHandler{s: s, conn: sc}
			rs := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}, sftp.WithStartDirectory(home))
			rs.Serve()
			rs.Close()
			return
		case "exec":
			req.Reply(true, nil)
			s.mu.Lock()
			s.sessions.Exec++
			s.mu.Unlock()
			code := s.runCommand(ch, parseString(req.Payload), home)
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
			return
		default:
			req.Reply(false, nil)
		}
	}
}

// runCommand runs command with the real /bin/sh in the sandbox's context:
// working directory the user's home under the root, MTLSCTL_ROOT set, and
// the shims first on PATH.
func (s *Server) runCommand(ch ssh.Channel, command, home string) int {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = s.Path(home)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, RootEnv+"=") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, RootEnv+"="+s.root, "HOME="+s.Path(home), "SANDBOX_CALLS="+s.callLog,
		"PATH="+s.binDir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	// Own process group, so Close can kill the script and its children;
	// WaitDelay bounds the wait for output pipes a stray child still holds.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 127
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 255
	}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		fmt.Fprintf(ch.Stderr(), "sandbox: %v\n", err)
		return 127
	}
	s.procs[cmd.Process] = true
	s.mu.Unlock()
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	err = cmd.Wait()
	s.mu.Lock()
	delete(s.procs, cmd.Process)
	s.mu.Unlock()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode()
	default:
		return 255
	}
}

// forward serves a direct-tcpip channel (the server acting as a bastion),
// to loopback targets only.
func (s *Server) forward(nc ssh.NewChannel) {
	var req struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		nc.Reject(ssh.ConnectionFailed, "bad request")
		return
	}
	if ip := net.ParseIP(req.Host); req.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		nc.Reject(ssh.Prohibited, "the sandbox forwards to loopback only")
		return
	}
	target, err := net.DialTimeout("tcp", net.JoinHostPort(req.Host, fmt.Sprint(req.Port)), 5*time.Second)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		target.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{}, 2)
	go func() { io.Copy(target, ch); target.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(ch, target); ch.CloseWrite(); done <- struct{}{} }()
	<-done // one side finished: close both so the other copy ends too
	ch.Close()
	target.Close()
	<-done
}

func parseString(payload []byte) string {
	if len(payload) < 4 {
		return ""
	}
	n := binary.BigEndian.Uint32(payload)
	if int(n) > len(payload)-4 {
		return ""
	}
	return string(payload[4 : 4+n])
}

// fsHandler serves SFTP requests over the server's root: every path the
// client names is taken relative to the root.
type fsHandler struct {
	s    *Server
	conn *ssh.ServerConn
}

func (h *fsHandler) path(p string) string { return h.s.Path(p) }

func (h *fsHandler) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return os.Open(h.path(r.Filepath))
}

func (h *fsHandler) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	fl := r.Pflags()
	flags := os.O_WRONLY
	if fl.Read {
		flags = os.O_RDWR
	}
	if fl.Creat {
		flags |= os.O_CREATE
	}
	if fl.Trunc {
		flags |= os.O_TRUNC
	}
	if fl.Excl {
		flags |= os.O_EXCL
	}
	mode := os.FileMode(0o644)
	if r.AttrFlags().Permissions {
		mode = r.Attributes().FileMode().Perm()
	}
	f, err := os.OpenFile(h.path(r.Filepath), flags, mode)
	if err != nil {
		return nil, err
	}
	return &faultWriter{f: f, h: h}, nil
}

// faultWriter applies the server's write faults.
type faultWriter struct {
	f *os.File
	h *fsHandler
}

func (w *faultWriter) WriteAt(b []byte, off int64) (int, error) {
	s := w.h.s
	s.mu.Lock()
	f := s.fault
	if f.DropOnWrite {
		s.mu.Unlock()
		w.h.conn.Close()
		return 0, errors.New("connection dropped")
	}
	if f.DiskFullAfter > 0 && s.written+int64(len(b)) > f.DiskFullAfter {
		s.mu.Unlock()
		return 0, syscall.ENOSPC
	}
	s.written += int64(len(b))
	s.mu.Unlock()
	return w.f.WriteAt(b, off)
}

func (w *faultWriter) Close() error { return w.f.Close() }

func (h *fsHandler) Filecmd(r *sftp.Request) error {
	p := h.path(r.Filepath)
	switch r.Method {
	case "Setstat":
		fl := r.AttrFlags()
		a := r.Attributes()
		if fl.Permissions {
			if err := os.Chmod(p, a.FileMode().Perm()); err != nil {
				return err
			}
		}
		if fl.Size {
			if err := os.Truncate(p, int64(a.Size)); err != nil {
				return err
			}
		}
		if fl.UidGid {
			if err := os.Chown(p, int(a.UID), int(a.GID)); err != nil {
				return err
			}
		}
		if fl.Acmodtime {
			return os.Chtimes(p, time.Unix(int64(a.Atime), 0), time.Unix(int64(a.Mtime), 0))
		}
		return nil
	case "Rename", "PosixRename":
		return os.Rename(p, h.path(r.Target))
	case "Rmdir":
		return syscall.Rmdir(p)
	case "Remove":
		return syscall.Unlink(p)
	case "Mkdir":
		return os.Mkdir(p, 0o755)
	case "Symlink":
		return os.Symlink(r.Filepath, h.path(r.Target))
	case "Link":
		return os.Link(p, h.path(r.Target))
	}
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename implements sftp.PosixRenameFileCmder.
func (h *fsHandler) PosixRename(r *sftp.Request) error {
	return os.Rename(h.path(r.Filepath), h.path(r.Target))
}

func (h *fsHandler) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	p := h.path(r.Filepath)
	switch r.Method {
	case "List":
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		var infos listerAt
		for _, e := range entries {
			if fi, err := e.Info(); err == nil {
				infos = append(infos, fi)
			}
		}
		return infos, nil
	case "Stat":
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		return listerAt{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat implements sftp.LstatFileLister.
func (h *fsHandler) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	fi, err := os.Lstat(h.path(r.Filepath))
	if err != nil {
		return nil, err
	}
	return listerAt{fi}, nil
}

type listerAt []os.FileInfo

func (l listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

// Readlink implements sftp.ReadlinkFileLister.
func (h *fsHandler) Readlink(p string) (string, error) { return os.Readlink(h.path(p)) }
