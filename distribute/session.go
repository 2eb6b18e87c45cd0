package distribute

import (
	"context"
	"sync"

	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Session is one command's work on the nodes: the topology, one SSH
// connection per node (and on it one remote shell and one SFTP session),
// shared by everything the command does: plan, apply, status and the live
// Consul checks (Live). Open it once per command and Close it at the end.
type Session struct {
	pool *transport.Pool
	o    Options
	topo *inventory.Topology

	liveOnce sync.Once
	live     *consulapi.Cluster
	// classes serialise proxy restarts of one class across nodes.
	classes classLocks
	// purge makes apply remove the node state directory at the end
	// (uninstall).
	purge bool
	// beforeMesh runs once the cluster is healthy, before any proxy
	// starts (SetBeforeMesh).
	beforeMesh func(context.Context) error
}

// SetBeforeMesh sets what apply does once every node is committed and the
// cluster is healthy, before any proxy starts or restarts: the caller
// writes the intentions there, so no proxy ever serves without them.
func (s *Session) SetBeforeMesh(fn func(context.Context) error) { s.beforeMesh = fn }

// Open prepares a session for the nodes of t. It connects lazily: no node
// is contacted until an operation needs it.
func Open(t *inventory.Topology, o Options) (*Session, error) {
	o = o.withDefaults()
	p, err := transport.New(t, o.Options)
	if err != nil {
		return nil, err
	}
	return &Session{pool: p, o: o, topo: t}, nil
}

// Close ends every remote shell and closes every connection.
func (s *Session) Close() { s.pool.Close() }

// Live is the session's handle on the live Consul cluster, on the same
// connections.
func (s *Session) Live() *consulapi.Cluster {
	s.liveOnce.Do(func() { s.live = consulapi.On(s.pool) })
	return s.live
}

func (s *Session) conn(ctx context.Context, n *inventory.Node) (*transport.Conn, error) {
	return s.pool.Conn(ctx, n)
}

func (s *Session) forEach(ctx context.Context, nodes []*inventory.Node, limit int, fn func(context.Context, *inventory.Node) error) map[string]error {
	return s.pool.ForEach(ctx, nodes, limit, fn)
}

func (s *Session) report(node, step, msg string, err error) { s.pool.Report(node, step, msg, err) }

func (s *Session) addr(n *inventory.Node) string { return s.pool.Addr(n) }
