package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Conn is the one SSH connection to a node. On it run at most two sessions
// for the whole command: the remote shell (Run) and SFTP (SFTP, Download).
type Conn struct {
	s      *Pool
	ep     endpoint
	client *ssh.Client
	sudo   bool // run the shell with sudo -n; upload into the user's home first

	runMu sync.Mutex // one step at a time on the shell
	sh    *shell

	mu     sync.Mutex
	sftpc  *sftp.Client
	home   string
	lost   bool
	closed bool
}

// Addr is the SSH endpoint (host:port).
func (c *Conn) Addr() string { return c.ep.addr() }

// Sudo reports whether steps run through sudo (a non-root user with
// ssh.sudo set): uploads then go to the user's home first.
func (c *Conn) Sudo() bool { return c.sudo }

func (c *Conn) markBroken() {
	c.mu.Lock()
	c.lost = true
	c.mu.Unlock()
}

// Broken reports whether the connection was lost.
func (c *Conn) Broken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost && !c.closed
}

func (c *Conn) close() {
	c.mu.Lock()
	c.closed = true
	if c.sftpc != nil {
		c.sftpc.Close()
	}
	c.mu.Unlock()
	c.runMu.Lock()
	if c.sh != nil {
		c.sh.close()
		c.sh = nil
	}
	c.runMu.Unlock()
	c.client.Close()
}

// Step runs fn under the step deadline (Options.StepTimeout). On expiry or
// cancellation the connection is closed, which unblocks fn; the node is
// unusable afterwards.
func (c *Conn) Step(ctx context.Context, name string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t := c.s.o.StepTimeout
	timer := time.NewTimer(t)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil && (c.Broken() || errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.EOF)) {
			return fmt.Errorf("%w: connection to %s lost during %s: %v", ErrUnreachable, c.ep.addr(), name, err)
		}
		return err
	case <-timer.C:
		c.client.Close()
		<-done
		return fmt.Errorf("%w: %s on %s took longer than %s", ErrTimeout, name, c.ep.addr(), t)
	case <-ctx.Done():
		c.client.Close()
		<-done
		return ctx.Err()
	}
}

// SFTP returns the node's SFTP client, opening it on first use. Writes are
// pipelined: many requests in flight on one session.
func (c *Conn) SFTP(ctx context.Context) (*sftp.Client, error) {
	c.mu.Lock()
	sc := c.sftpc
	c.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	err := c.Step(ctx, "open sftp", func() error {
		var err error
		sc, err = sftp.NewClient(c.client, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sftp subsystem: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sftpc != nil {
		sc.Close()
		return c.sftpc, nil
	}
	c.sftpc = sc
	return sc, nil
}

// HomeDir is the remote user's home (SFTP's working directory).
func (c *Conn) HomeDir(ctx context.Context) (string, error) {
	c.mu.Lock()
	h := c.home
	c.mu.Unlock()
	if h != "" {
		return h, nil
	}
	sc, err := c.SFTP(ctx)
	if err != nil {
		return "", err
	}
	err = c.Step(ctx, "getwd", func() error {
		h, err = sc.Getwd()
		return err
	})
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.home = h
	c.mu.Unlock()
	return h, nil
}

// ScriptError is a step's non-zero exit with its stderr (steps never print
// secrets).
type ScriptError struct {
	Step   string
	Code   int
	Stderr string
}

func (e *ScriptError) Error() string {
	msg := lastBytes(e.Stderr, 2000)
	if msg == "" {
		msg = "no message"
	}
	return fmt.Sprintf("remote step %s exited %d: %s", e.Step, e.Code, msg)
}

// Run runs script as one step on the node's remote shell (opened on first
// use: one session, one login, for the whole command) and returns its
// stdout. A non-zero exit is a *ScriptError carrying the step's stderr.
func (c *Conn) Run(ctx context.Context, name, script string) (string, error) {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	var out string
	err := c.Step(ctx, name, func() error {
		if c.sh == nil || c.sh.dead {
			if c.sh != nil {
				c.sh.close()
			}
			sh, err := openShell(c.client, c.sudo)
			if err != nil {
				return err
			}
			c.sh = sh
		}
		var err error
		out, err = c.sh.run(name, script)
		return err
	})
	return out, err
}

// Dial opens a TCP connection to addr as seen from the node (a direct-tcpip
// channel on the SSH connection: no session, no shell). The node's answer to
// the channel open is awaited for at most ConnectTimeout.
func (c *Conn) Dial(ctx context.Context, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.s.o.ConnectTimeout)
	defer cancel()
	nc, err := c.client.DialContext(dctx, "tcp", addr)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("%w: %s did not open a channel to %s within %s", ErrTimeout, c.ep.addr(), addr, c.s.o.ConnectTimeout)
	}
	return nc, err
}

// MaxDownload is Download's default limit (1 MiB): no file mtlsctl renders
// comes near it, a diff of a larger one is no review aid, and a node must
// not be able to make the admin machine hold whatever it offers (a 1 GB
// sparse file once took 7 GB).
const MaxDownload = 1 << 20

// Downloaded is one node file as Download read it.
type Downloaded struct {
	// Content is the whole file (at most the limit), nil when Err is set.
	Content []byte
	// Size is the file's size on the node when known (also when it was
	// too large to read).
	Size int64
	// Err says why the file was not read: fs.ErrNotExist, ErrNotRegular
	// (a symbolic link, never read through), ErrTooLarge, or the SFTP
	// error.
	Err error
}

// Download reads files concurrently on the SFTP session, each only if it
// is a regular file of at most limit bytes (limit <= 0: MaxDownload).
// A symbolic link is never followed: the path is lstat'ed first and the
// opened file fstat'ed again (SFTP has no O_NOFOLLOW, so a link swapped in
// between the two is caught there as long as it leads to anything but a
// regular file; callers that need to be sure compare the content's hash
// with one taken on the node). At most limit+1 bytes are read, whatever
// the node claims the size is. Per-file failures are in the result; the
// error is for the session (SFTP unavailable, connection lost, deadline).
func (c *Conn) Download(ctx context.Context, paths []string, limit int64) (map[string]Downloaded, error) {
	out := map[string]Downloaded{}
	if len(paths) == 0 {
		return out, nil
	}
	if limit <= 0 {
		limit = MaxDownload
	}
	sc, err := c.SFTP(ctx)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	err = c.Step(ctx, "download", func() error {
		var wg sync.WaitGroup
		var sessionErr error
		for _, p := range paths {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := readRemote(sc, p, limit)
				mu.Lock()
				defer mu.Unlock()
				if d.Err != nil && sessionErr == nil && !fileLevel(d.Err) {
					sessionErr = fmt.Errorf("read %s: %w", p, d.Err)
				}
				out[p] = d
			}()
		}
		wg.Wait()
		return sessionErr
	})
	return out, err
}

// fileLevel reports whether err is about one file, not the session.
func fileLevel(err error) bool {
	var se *sftp.StatusError
	return errors.Is(err, ErrNotRegular) || errors.Is(err, ErrTooLarge) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.As(err, &se)
}

func readRemote(sc *sftp.Client, p string, limit int64) Downloaded {
	fi, err := sc.Lstat(p)
	if err != nil {
		return Downloaded{Err: err}
	}
	if err := checkRegular(p, fi, limit); err != nil {
		return Downloaded{Size: fi.Size(), Err: err}
	}
	f, err := sc.Open(p)
	if err != nil {
		return Downloaded{Err: err}
	}
	defer f.Close()
	// What was opened: the path may have been swapped since the lstat.
	ofi, err := f.Stat()
	if err != nil {
		return Downloaded{Err: err}
	}
	if err := checkRegular(p, ofi, limit); err != nil {
		return Downloaded{Size: ofi.Size(), Err: err}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return Downloaded{Err: err}
	}
	if int64(len(b)) > limit {
		return Downloaded{Size: ofi.Size(), Err: fmt.Errorf("%s grew past %d bytes while it was read: %w", p, limit, ErrTooLarge)}
	}
	return Downloaded{Content: b, Size: int64(len(b))}
}

// checkRegular refuses anything but a regular file of at most limit bytes.
func checkRegular(p string, fi fs.FileInfo, limit int64) error {
	switch m := fi.Mode(); {
	case m&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link: %w", p, ErrNotRegular)
	case !m.IsRegular():
		return fmt.Errorf("%s is a %s: %w", p, typeName(m), ErrNotRegular)
	case fi.Size() > limit:
		return fmt.Errorf("%s is %d bytes, more than %d: %w", p, fi.Size(), limit, ErrTooLarge)
	}
	return nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

func lastBytes(s string, n int) string {
	s = string(bytes.TrimSpace([]byte(s)))
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}
