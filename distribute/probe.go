package distribute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Probe outcomes: what a TCP connection opened from a node saw.
const (
	ProbeAnswered = "answered"  // data came back
	ProbeHeld     = "held-open" // still open after the hold: a listener that waits for the client to speak
	ProbeClosed   = "closed"    // connected, then closed with no data: the mesh refused it
	ProbeRefused  = "refused"   // the connection was refused
	ProbeTimeout  = "timeout"   // no connection within the timeout: dropped on the way
	ProbeError    = "error"     // the node could not be asked
)

// ProbeResult is one probe.
type ProbeResult struct {
	Outcome string        `json:"outcome"`
	Detail  string        `json:"detail,omitempty"`
	Took    time.Duration `json:"took_ns"`
}

// Passed reports whether the path carried the connection to a listener.
func (p ProbeResult) Passed() bool { return p.Outcome == ProbeAnswered || p.Outcome == ProbeHeld }

// Probe opens a TCP connection to addr from the node (a direct-tcpip
// channel: sshd on the node makes the connection, so it goes through the
// node's own nat OUTPUT rules like a component's would) and watches it for
// hold: an answer or a connection still open after hold means the path
// works; a close without data means something on the path refused it (a
// Connect proxy closes the client's connection when the intentions deny
// it or the far side is down). The first bytes received are kept in Detail.
func (s *Session) Probe(ctx context.Context, node, addr string, hold, timeout time.Duration) ProbeResult {
	start := time.Now()
	n := s.topo.Node(node)
	if n == nil {
		return ProbeResult{Outcome: ProbeError, Detail: "no such node " + node}
	}
	c, err := s.conn(ctx, n)
	if err != nil {
		return ProbeResult{Outcome: ProbeError, Detail: err.Error(), Took: time.Since(start)}
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := c.Dial(dctx, addr)
	if err != nil {
		out := ProbeError
		switch {
		case dctx.Err() != nil && ctx.Err() == nil:
			out = ProbeTimeout
		case strings.Contains(err.Error(), "refused"):
			out = ProbeRefused
		case strings.Contains(err.Error(), "connect failed"):
			// sshd reports its connect(2) failure this way.
			out = ProbeRefused
		}
		return ProbeResult{Outcome: out, Detail: err.Error(), Took: time.Since(start)}
	}
	defer conn.Close()
	// SSH channels have no read deadline: read in a goroutine and give up
	// after hold (closing the connection ends the read).
	type readResult struct {
		data []byte
		err  error
	}
	got := make(chan readResult, 1)
	go func() {
		buf := make([]byte, 256)
		k, err := conn.Read(buf)
		got <- readResult{buf[:k], err}
	}()
	var rr readResult
	select {
	case rr = <-got:
	case <-time.After(hold):
		return ProbeResult{Outcome: ProbeHeld, Detail: fmt.Sprintf("open after %s", hold), Took: time.Since(start)}
	case <-ctx.Done():
		return ProbeResult{Outcome: ProbeError, Detail: ctx.Err().Error(), Took: time.Since(start)}
	}
	took := time.Since(start)
	switch {
	case len(rr.data) > 0:
		return ProbeResult{Outcome: ProbeAnswered, Detail: strings.TrimSpace(string(rr.data)), Took: took}
	case rr.err == nil:
		return ProbeResult{Outcome: ProbeAnswered, Took: took}
	case errors.Is(rr.err, io.EOF):
		return ProbeResult{Outcome: ProbeClosed, Detail: "closed without an answer", Took: took}
	default:
		return ProbeResult{Outcome: ProbeClosed, Detail: rr.err.Error(), Took: took}
	}
}

// WaitListening waits until every address in addrs accepts a TCP
// connection made from the node (a Connect proxy opens its public listener
// only once it holds its certificate, so this is when it can serve), or
// until ctx ends; it then names the addresses still closed.
func (s *Session) WaitListening(ctx context.Context, node string, addrs []string) error {
	n := s.topo.Node(node)
	if n == nil {
		return fmt.Errorf("no such node %s", node)
	}
	c, err := s.conn(ctx, n)
	if err != nil {
		return err
	}
	pending := append([]string(nil), addrs...)
	var last error
	for {
		var still []string
		for _, a := range pending {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			conn, err := c.Dial(dctx, a)
			cancel()
			if err != nil {
				last = err
				still = append(still, a)
				continue
			}
			conn.Close()
		}
		if len(still) == 0 {
			return nil
		}
		pending = still
		select {
		case <-ctx.Done():
			return fmt.Errorf("on %s, nothing listens on %s yet (%v)", node, strings.Join(pending, ", "), last)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
