package distribute

import (
	"time"

	"github.com/mtlsctl/mtlsctl/distribute/transport"
)

// Options says how to reach the nodes (transport.Options) and how an
// operation behaves. The zero value is usable for Plan and Status; Apply
// needs JournalDir.
type Options struct {
	transport.Options

	// JournalDir is the admin-side directory (ca.State.JournalDir) where
	// Apply keeps its journal. Required by Apply. The caller holds the
	// state directory's lock while Apply runs.
	JournalDir string
	// ForceUnlock says which node locks held by other runs Apply may take
	// over (see Unlock); the zero value takes none. The holder is judged on
	// this machine: a lock of a run still going here is never taken.
	ForceUnlock Unlock
	// LockTTL is the age after which a held lock is reported as probably
	// stale (default 1h). A stale lock is still never taken silently.
	LockTTL time.Duration
	// RestartNeeded says whether node needs a restart rather than a reload
	// for the changed paths. Default: restart on a node's first apply (the
	// agent is started) and when a changed agent config needs it
	// (consulcfg.NeedsRestart); reload otherwise.
	RestartNeeded func(node string, changed []string) bool
	// NoAgents says the nodes run no Consul agent to ask (the demo's
	// sandbox): proxies are started without waiting for their sidecars to
	// be registered.
	NoAgents bool

	hooks *testHooks
}

// testHooks let tests stop Apply at exact points, as if the process died.
type testHooks struct {
	// afterCommit runs after each node's commit; a non-nil error makes
	// Apply return at once, leaving everything as a killed process would.
	afterCommit func(node string) error
	// afterStage runs after each node's staging is verified.
	afterStage func(node string)
}

func (o Options) withDefaults() Options {
	o.Options = o.Options.WithDefaults()
	if o.LockTTL <= 0 {
		o.LockTTL = time.Hour
	}
	return o
}

// Event is one progress step on one node.
type Event = transport.Event

// Reporter receives progress events; it is called from many goroutines.
type Reporter = transport.Reporter

// ReporterFunc adapts a function to Reporter.
type ReporterFunc = transport.ReporterFunc
