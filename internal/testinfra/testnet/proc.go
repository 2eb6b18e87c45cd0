package testnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// DefaultStopTimeout is how long Proc.Stop waits after SIGTERM before SIGKILL.
const DefaultStopTimeout = 5 * time.Second

// ErrNotExited is returned when a process survives SIGKILL for seconds (for
// example stuck in uninterruptible sleep).
var ErrNotExited = errors.New("testnet: process did not exit")

// Proc is a process the harness started and tracks by PID.
type Proc struct {
	// Name is the label given to Start ("sshd" and "mountns" for the
	// harness's own processes).
	Name string
	// PID is the process ID; with nsenter and exec chains it is the PID of
	// the command itself.
	PID int
	// LogFile is the host path of the process's combined stdout and stderr.
	LogFile string
	// StopTimeout overrides DefaultStopTimeout for Stop when positive.
	StopTimeout time.Duration

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts cmd with output appended to logPath, in its own process
// group, with SIGKILL as its parent-death signal so that a crashed test binary
// does not leave it running.
func startProc(name, logPath string, cmd *exec.Cmd) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, LogFile: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return fmt.Errorf("testnet: signal %s (pid %d): %w", p.Name, p.PID, os.ErrProcessDone)
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits for the process to exit and returns its exit error, as
// exec.Cmd.Wait does.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to StopTimeout (DefaultStopTimeout when
// zero), then SIGKILLs the process group. It returns nil once the process is
// gone, whatever its exit status; Wait returns that status.
func (p *Proc) Stop() error {
	grace := p.StopTimeout
	if grace <= 0 {
		grace = DefaultStopTimeout
	}
	return p.stop(grace)
}

func (p *Proc) stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	// The process group is the one Setpgid gave this process: ours alone.
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%w: %s (pid %d) survived SIGKILL", ErrNotExited, p.Name, p.PID)
	}
}
