package transport

import (
	"bufio"
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

//go:embed driver.sh
var driverScript string

// DriverCommand is the exec request that starts the remote shell: the driver
// in argv (dash reads a script on stdin ahead of what it runs, so stdin is
// kept for the steps), through sudo -n when asked. It holds no secret.
func DriverCommand(sudo bool) string {
	cmd := "sh -c " + Quote(driverScript)
	if sudo {
		cmd = "sudo -n " + cmd
	}
	return cmd
}

// maxStepOutput bounds what one step may print (an inspect of a large
// cluster prints kilobytes; anything near this is a fault).
const maxStepOutput = 64 << 20

// shell is the node's one remote shell session running the driver.
type shell struct {
	sess   *ssh.Session
	in     io.WriteCloser
	out    *bufio.Reader
	token  string
	errBuf *limitedBuffer // the session's own stderr (sudo, login noise)
	dead   bool
}

func openShell(client *ssh.Client, sudo bool) (*shell, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	in, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	sh := &shell{sess: sess, in: in, out: bufio.NewReaderSize(out, 64<<10), token: "@mtlsctl-" + hex.EncodeToString(tok), errBuf: &limitedBuffer{max: 16 << 10}}
	sess.Stderr = sh.errBuf
	if err := sess.Start(DriverCommand(sudo)); err != nil {
		sess.Close()
		return nil, err
	}
	if _, err := io.WriteString(in, sh.token+"\n"); err != nil {
		return nil, sh.fail(err)
	}
	// Whatever the login shell's dotfiles print before the driver starts
	// is skipped.
	for {
		line, err := sh.out.ReadString('\n')
		if err != nil {
			return nil, sh.fail(err)
		}
		switch strings.TrimSuffix(line, "\n") {
		case sh.token + " READY":
			return sh, nil
		}
		if msg, ok := strings.CutPrefix(line, sh.token+" FAIL "); ok {
			sh.close()
			return nil, fmt.Errorf("remote shell: %s", strings.TrimSpace(msg))
		}
	}
}

// fail ends a shell that broke before or during a step and explains why:
// the session's exit status and stderr (sudo asking for a password, a
// missing sh) say more than the EOF that revealed it.
func (sh *shell) fail(cause error) error {
	sh.dead = true
	sh.in.Close()
	werr := sh.sess.Wait()
	sh.sess.Close()
	msg := lastBytes(sh.errBuf.String(), 2000)
	if strings.Contains(msg, "password is required") {
		msg += " (sudo needs NOPASSWD for this user on the node)"
	}
	var ee *ssh.ExitError
	if errors.As(werr, &ee) {
		if msg == "" {
			msg = "no message"
		}
		return &ScriptError{Step: "shell", Code: ee.ExitStatus(), Stderr: msg}
	}
	if msg != "" {
		return fmt.Errorf("remote shell ended: %v: %s", cause, msg)
	}
	return fmt.Errorf("remote shell ended: %w", cause)
}

// run sends one step and reads its framed answer.
func (sh *shell) run(name, script string) (string, error) {
	var req strings.Builder
	req.Grow(len(script) + 2*len(sh.token) + 32)
	req.WriteString(sh.token + " STEP " + stepName(name) + "\n")
	req.WriteString(script)
	if !strings.HasSuffix(script, "\n") {
		req.WriteByte('\n')
	}
	req.WriteString(sh.token + " END\n")
	if _, err := io.WriteString(sh.in, req.String()); err != nil {
		return "", sh.fail(err)
	}
	var stdout bytes.Buffer
	rcPrefix := sh.token + " RC "
	code := -1
	for code < 0 {
		line, err := sh.out.ReadString('\n')
		if err != nil {
			return "", sh.fail(err)
		}
		if rest, ok := strings.CutPrefix(line, rcPrefix); ok {
			code, err = strconv.Atoi(strings.TrimSpace(rest))
			if err != nil {
				return "", sh.fail(fmt.Errorf("bad frame %q", line))
			}
			break
		}
		if stdout.Len()+len(line) > maxStepOutput {
			return "", sh.fail(fmt.Errorf("step %s printed more than %d bytes", name, maxStepOutput))
		}
		stdout.WriteString(line)
	}
	// The driver puts a newline before the RC line: it is not the step's.
	out := strings.TrimSuffix(stdout.String(), "\n")
	var stderr strings.Builder
	ePrefix, end := sh.token+" E ", sh.token+" END\n"
	for {
		line, err := sh.out.ReadString('\n')
		if err != nil {
			return out, sh.fail(err)
		}
		if line == end {
			break
		}
		if rest, ok := strings.CutPrefix(line, ePrefix); ok && stderr.Len() < 1<<20 {
			stderr.WriteString(rest)
		}
	}
	if code != 0 {
		return out, &ScriptError{Step: name, Code: code, Stderr: stderr.String()}
	}
	return out, nil
}

// close ends the driver (BYE) and the session.
func (sh *shell) close() {
	if !sh.dead {
		io.WriteString(sh.in, sh.token+" BYE\n")
		sh.in.Close()
	}
	sh.dead = true
	sh.sess.Close()
}

// stepName keeps a step's name to one safe word for the frame line.
func stepName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, s)
	if s == "" {
		return "step"
	}
	return s
}

// limitedBuffer keeps the last max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > l.max {
		l.b = append([]byte(nil), l.b[len(l.b)-l.max:]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
