package distribute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// nodeConn is the one SSH connection to a node; SFTP and every script run
// as sessions multiplexed on it.
type nodeConn struct {
	s      *session
	node   *inventory.Node
	ep     endpoint
	client *ssh.Client
	sudo   bool // run scripts with sudo -n; upload into the user's home first

	mu     sync.Mutex
	sftpc  *sftp.Client
	home   string
	lost   bool
	closed bool
}

func (c *nodeConn) markBroken() {
	c.mu.Lock()
	c.lost = true
	c.mu.Unlock()
}

func (c *nodeConn) broken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost && !c.closed
}

func (c *nodeConn) close() {
	c.mu.Lock()
	c.closed = true
	if c.sftpc != nil {
		c.sftpc.Close()
	}
	c.mu.Unlock()
	c.client.Close()
}

// step runs fn under the step deadline. On expiry or cancellation the
// connection is closed, which unblocks fn; the node is unusable afterwards.
func (c *nodeConn) step(ctx context.Context, name string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t := c.s.o.StepTimeout
	timer := newTimer(t)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil && (c.broken() || errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.EOF)) {
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

// sftp returns the node's SFTP client, opening it on first use. Writes are
// pipelined: many requests in flight on one session.
func (c *nodeConn) sftp(ctx context.Context) (*sftp.Client, error) {
	c.mu.Lock()
	sc := c.sftpc
	c.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	err := c.step(ctx, "open sftp", func() error {
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

// homeDir is the remote user's home (SFTP's working directory).
func (c *nodeConn) homeDir(ctx context.Context) (string, error) {
	c.mu.Lock()
	h := c.home
	c.mu.Unlock()
	if h != "" {
		return h, nil
	}
	sc, err := c.sftp(ctx)
	if err != nil {
		return "", err
	}
	err = c.step(ctx, "getwd", func() error {
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

// scriptError is a script's non-zero exit with its stderr (scripts never
// print secrets).
type scriptError struct {
	Code   int
	Stderr string
}

func (e *scriptError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if len(msg) > 2000 {
		msg = msg[len(msg)-2000:]
	}
	if msg == "" {
		msg = "no message"
	}
	return fmt.Sprintf("remote script exited %d: %s", e.Code, msg)
}

// run sends script to `sh -s` (with sudo -n when configured) and returns its
// stdout.
func (c *nodeConn) run(ctx context.Context, name, script string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := c.step(ctx, name, func() error {
		sess, err := c.client.NewSession()
		if err != nil {
			return err
		}
		defer sess.Close()
		sess.Stdin = strings.NewReader(script)
		sess.Stdout = &stdout
		sess.Stderr = &stderr
		cmd := "sh -s"
		if c.sudo {
			cmd = "sudo -n sh -s"
		}
		return sess.Run(cmd)
	})
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		msg := stderr.String()
		if c.sudo && strings.Contains(msg, "password is required") {
			msg += " (sudo needs NOPASSWD for this user on the node)"
		}
		return stdout.String(), &scriptError{Code: ee.ExitStatus(), Stderr: msg}
	}
	if err != nil {
		return stdout.String(), err
	}
	return stdout.String(), nil
}

// download reads whole files concurrently on the SFTP session, with reads
// sized from the file's size. Missing files map to nil with no error.
func (c *nodeConn) download(ctx context.Context, paths []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(paths) == 0 {
		return out, nil
	}
	sc, err := c.sftp(ctx)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	err = c.step(ctx, "download", func() error {
		var wg sync.WaitGroup
		var firstErr error
		for _, p := range paths {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := readRemote(sc, p)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("read %s: %w", p, err)
				}
				out[p] = b
			}()
		}
		wg.Wait()
		return firstErr
	})
	return out, err
}

func readRemote(sc *sftp.Client, p string) ([]byte, error) {
	f, err := sc.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil && err != io.EOF {
		return nil, err
	}
	return buf.Bytes(), nil
}

func newTimer(d time.Duration) *time.Timer { return time.NewTimer(d) }

// sftpClient is the part of *sftp.Client that uploads use.
type sftpClient interface {
	OpenFile(path string, f int) (*sftp.File, error)
}
