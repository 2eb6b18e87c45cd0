package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// expandProxyTokens expands the tokens OpenSSH documents for ProxyCommand:
// %h (host after HostName), %p (port), %r (user), %n (the name as given)
// and %%. Any other token is refused rather than passed on literally. The
// values go into a shell command line unquoted, as in OpenSSH, so a value
// the shell would interpret (a host "a;id" in the cluster file) is refused,
// as OpenSSH does since 9.6.
func expandProxyTokens(cmd string, e endpoint) (string, error) {
	for _, v := range []struct{ token, value string }{{"%h", e.host}, {"%r", e.user}, {"%n", e.alias}} {
		if !strings.Contains(cmd, v.token) {
			continue
		}
		for _, r := range v.value {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:+@%", r)) {
				return "", fmt.Errorf("%s would be %q, which holds %q, a character the shell would interpret; use a plain host and user name", v.token, v.value, r)
			}
		}
	}
	var b strings.Builder
	for i := 0; i < len(cmd); i++ {
		if cmd[i] != '%' {
			b.WriteByte(cmd[i])
			continue
		}
		i++
		if i == len(cmd) {
			return "", errors.New("it ends in a lone %; write %% for a literal %")
		}
		switch cmd[i] {
		case '%':
			b.WriteByte('%')
		case 'h':
			b.WriteString(e.host)
		case 'p':
			b.WriteString(strconv.Itoa(e.port))
		case 'r':
			b.WriteString(e.user)
		case 'n':
			b.WriteString(e.alias)
		default:
			return "", fmt.Errorf("token %%%c is not supported here (ProxyCommand takes %%h, %%p, %%r, %%n and %%%%)", cmd[i])
		}
	}
	return b.String(), nil
}

// dialProxyCommand runs e's ProxyCommand with `sh -c`, as OpenSSH does, and
// returns its stdin and stdout as the connection. The process runs in its
// own process group; closing the connection kills that group by PID. The
// handshake's deadline closes the connection, so a command that never
// answers is killed too.
func (s *Pool) dialProxyCommand(e endpoint) (net.Conn, error) {
	line, err := expandProxyTokens(e.proxyCmd, e)
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: ProxyCommand for host %s: %v", s.cfgPath, e.alias, err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ProxyCommand for host %s: %w", e.alias, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("ProxyCommand for host %s: %w", e.alias, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("ProxyCommand for host %s: %w", e.alias, err)
	}
	cmd := exec.Command("/bin/sh", "-c", line)
	// *os.File ends: no copying goroutines, so Wait only reaps the process.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("%w: ProxyCommand for host %s (%s) did not start: %v", ErrUnreachable, e.alias, s.cfgPath, err)
	}
	c := &cmdConn{in: inW, out: outR, pid: cmd.Process.Pid, exited: make(chan struct{}), cmdline: line}
	go func() {
		c.stderr.fill(errR)
		errR.Close()
	}()
	go func() {
		cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// cmdConn is a ProxyCommand's stdin and stdout as a net.Conn.
type cmdConn struct {
	in      *os.File
	out     *os.File
	pid     int
	exited  chan struct{}
	cmdline string
	stderr  tailBuffer
	once    sync.Once
}

func (c *cmdConn) Read(b []byte) (int, error)  { return c.out.Read(b) }
func (c *cmdConn) Write(b []byte) (int, error) { return c.in.Write(b) }

// Close closes the pipes and kills the command's process group.
func (c *cmdConn) Close() error {
	c.once.Do(func() {
		c.in.Close()
		c.out.Close()
		select {
		case <-c.exited:
		default:
			// The group is the shell's PID (Setpgid); its children (nc,
			// ssh -W) are in it too.
			syscall.Kill(-c.pid, syscall.SIGKILL)
		}
	})
	return nil
}

// LocalAddr and RemoteAddr are zero TCP addresses, like the SSH library's
// channel connections (the host key check needs a host:port to parse).
func (c *cmdConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *cmdConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *cmdConn) SetDeadline(t time.Time) error      { return c.out.SetReadDeadline(t) }
func (c *cmdConn) SetReadDeadline(t time.Time) error  { return c.out.SetReadDeadline(t) }
func (c *cmdConn) SetWriteDeadline(t time.Time) error { return c.in.SetWriteDeadline(t) }

// proxyStderr is the tail of a ProxyCommand's stderr for a message ("" for
// other connections).
func proxyStderr(conn net.Conn) string {
	c, ok := conn.(*cmdConn)
	if !ok {
		return ""
	}
	// The command was just killed or closed its end; give its last words a
	// moment to arrive.
	select {
	case <-c.exited:
	case <-time.After(200 * time.Millisecond):
	}
	msg := c.stderr.String()
	if msg == "" {
		return fmt.Sprintf("; ProxyCommand %q printed nothing on stderr", c.cmdline)
	}
	return fmt.Sprintf("; ProxyCommand %q said: %s", c.cmdline, msg)
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 400

func (t *tailBuffer) fill(f *os.File) {
	b := make([]byte, 512)
	for {
		n, err := f.Read(b)
		if n > 0 {
			t.mu.Lock()
			t.buf = append(t.buf, b[:n]...)
			if len(t.buf) > tailMax {
				t.buf = t.buf[len(t.buf)-tailMax:]
			}
			t.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.Join(bytes.Fields(t.buf), []byte(" ")))
}
