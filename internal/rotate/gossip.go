package rotate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
)

// The steps of a gossip rotation, in order. Each is idempotent, so a
// re-run resumes at the recorded step and repeats it.
const (
	// StepInstall installs the new key on every member and waits until every
	// expected member of every pool (LAN of each datacenter, WAN) holds it.
	StepInstall = "install"
	// StepUse makes the new key the primary key of every member.
	StepUse = "use"
	// StepRemove removes the old key from every member and records the new
	// key as the state's primary.
	StepRemove = "remove"
	// StepConfig writes the new `encrypt` into every node's config with a
	// normal apply, so that wiped or new nodes can join.
	StepConfig = "config"
)

var gossipSteps = []string{StepInstall, StepUse, StepRemove, StepConfig}

// Errors of a gossip rotation, wrapped in a *GossipError.
var (
	// ErrNotEveryMember means the new key did not reach every expected
	// member within the wait: a member is down, unreachable or not joined.
	ErrNotEveryMember = errors.New("the new key is not on every member")
	// ErrNotPrimary means a member does not use the new key as primary
	// after `use`.
	ErrNotPrimary = errors.New("the new key is not primary on every member")
	// ErrOldKeyRemains means the old key is still installed somewhere after
	// `remove`.
	ErrOldKeyRemains = errors.New("the old key is still installed")
	// ErrProgressMismatch means the progress file does not describe the
	// keyring in the state directory.
	ErrProgressMismatch = errors.New("gossip rotation progress does not match the keyring")
)

// GossipOptions configures [Gossip].
type GossipOptions struct {
	// State is the admin-side state directory (the caller holds its lock).
	State *ca.State
	// Agent reaches the cluster's keyring API through one agent.
	Agent Agent
	// Expected is the membership every key operation must reach; with none,
	// only the pools' own counts and the agent's member list are checked.
	Expected Expected
	// Apply pushes the nodes' configs from the state (now naming the new
	// key) with a normal apply. Required for the config step.
	Apply func(ctx context.Context) error
	// Wait bounds how long install waits for every member to hold the new
	// key (default two keyring operation timeouts, at least 30 s).
	Wait time.Duration
	// Poll is the pause between keyring listings while waiting (default 1 s).
	Poll time.Duration
	// Log receives one line per step and per pool (default: discarded).
	Log io.Writer
	// Rand is the randomness for the new key (default crypto/rand).
	Rand io.Reader
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// StepTime is how long one step took.
type StepTime struct {
	Step     string        `json:"step"`
	Duration time.Duration `json:"duration_ns"`
}

// GossipResult is what a completed gossip rotation did.
type GossipResult struct {
	// Old and New are the fingerprints of the replaced and the new key.
	Old string `json:"old"`
	New string `json:"new"`
	// ResumedAt is the step a re-run resumed at ("" for a fresh rotation).
	ResumedAt string     `json:"resumed_at,omitempty"`
	Steps     []StepTime `json:"steps"`
	// Pools is the keyring as verified after the old key was removed.
	Pools    []PoolStatus  `json:"pools"`
	Duration time.Duration `json:"duration_ns"`
}

// GossipError says where a gossip rotation stopped, what the cluster holds
// and how to resume.
type GossipError struct {
	Step string // the step that failed
	Old  string // fingerprint of the old key
	New  string // fingerprint of the new key
	// Pools is the last keyring listing (nil when none succeeded).
	Pools []PoolStatus
	// Missing names the members that are down, not alive or not joined.
	Missing []string
	Err     error
}

func (e *GossipError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rotate gossip stopped at step %q: %v", e.Step, e.Err)
	if len(e.Missing) > 0 {
		fmt.Fprintf(&b, "\n  members missing: %s", strings.Join(e.Missing, ", "))
	}
	for _, p := range e.Pools {
		fmt.Fprintf(&b, "\n  keyring %s", p)
	}
	fmt.Fprintf(&b, "\n  where the cluster is: %s", e.where())
	fmt.Fprintf(&b, "\n  to resume: fix the cause, then re-run `mtlsctl rotate gossip` (it resumes at step %q)", e.Step)
	return b.String()
}

func (e *GossipError) where() string {
	switch e.Step {
	case StepInstall:
		on := "on the members counted above"
		if len(e.Pools) == 0 {
			on = "on the members that answered (no keyring listing succeeded)"
		}
		return fmt.Sprintf("the old key %s is still primary everywhere; the new key %s is installed %s; nothing was switched", e.Old, e.New, on)
	case StepUse:
		return fmt.Sprintf("the new key %s is installed everywhere; some members may already use it as primary, others the old key %s (both keys are installed, so gossip works)", e.New, e.Old)
	case StepRemove:
		return fmt.Sprintf("the new key %s is primary; the old key %s may still be installed on some members", e.New, e.Old)
	case StepConfig:
		return fmt.Sprintf("the cluster uses only the new key %s and the state records it as primary; some nodes' configs may still name the old key %s", e.New, e.Old)
	}
	return "unknown"
}

// Unwrap returns the cause.
func (e *GossipError) Unwrap() error { return e.Err }

// gossipProgress is what the state directory records of a gossip rotation
// (ca.GossipRotation): the step it is at. It holds fingerprints only: the
// new key itself waits in the keyring (gossip.json, as ca.Keyring.Pending).
type gossipProgress struct {
	Step    string    `json:"step"`
	Old     string    `json:"old_fingerprint"`
	New     string    `json:"new_fingerprint"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// loadProgress reads the progress recorded for r into v; it reports false
// when none is in progress.
func loadProgress(st *ca.State, r ca.Rotation, v any) (bool, error) {
	data, ok, err := st.ReadRotation(r)
	if !ok || err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%w: %s: %v: restore it from a backup or remove it to start the rotation again", ca.ErrCorrupt, st.RotationFile(r), err)
	}
	return true, nil
}

func saveProgress(st *ca.State, r ca.Rotation, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return st.WriteRotation(r, append(data, '\n'))
}

// GossipInProgress reports the step a gossip rotation recorded in the state
// directory ("" when none is in progress).
func GossipInProgress(st *ca.State) (string, error) {
	var p gossipProgress
	ok, err := loadProgress(st, ca.GossipRotation, &p)
	if !ok || err != nil {
		return "", err
	}
	return p.Step, nil
}

type gossipRun struct {
	o      GossipOptions
	path   string // the progress file, for messages
	prog   gossipProgress
	oldKey string // "" in the config step (not needed)
	newKey string
	last   []PoolStatus
	opMax  time.Duration // bound of one keyring operation
	// resumedAt is the step a re-run resumed at ("" for a fresh run).
	resumedAt string
}

// Gossip rotates the cluster's gossip key through the keyring API: install
// the new key, wait until every expected member in every pool holds it, use
// it, remove the old key, record the new key as the state's primary and push
// the nodes' configs (o.Apply). It resumes a rotation recorded in the state
// directory at its step. A failure stops at once and returns a
// *GossipError saying where the cluster is and how to resume; in
// particular a member that is down during install stops the rotation
// before `use`, with the old key still primary.
//
// Consul before 1.11 does not report primary keys: the use step is then
// verified by the remove step, which every member whose primary is still
// the old key refuses.
func Gossip(ctx context.Context, o GossipOptions) (*GossipResult, error) {
	if o.State == nil || o.Agent == nil {
		return nil, errors.New("rotate gossip: no state directory or agent")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	r := &gossipRun{o: o, path: o.State.RotationFile(ca.GossipRotation), opMax: o.Expected.opTimeout()}
	if r.o.Wait <= 0 {
		r.o.Wait = max(30*time.Second, 2*r.opMax)
	}
	start := o.Now()
	res := &GossipResult{}
	if err := r.begin(res); err != nil {
		return nil, err
	}
	res.Old, res.New = r.prog.Old, r.prog.New
	r.resumedAt = res.ResumedAt
	for i := slices.Index(gossipSteps, r.prog.Step); i < len(gossipSteps); i++ {
		step := gossipSteps[i]
		t0 := o.Now()
		fmt.Fprintf(o.Log, "gossip %-8s %s\n", step, r.describe(step))
		if err := r.run(ctx, step); err != nil {
			return nil, r.fail(ctx, step, err)
		}
		res.Steps = append(res.Steps, StepTime{Step: step, Duration: o.Now().Sub(t0)})
		if i+1 < len(gossipSteps) {
			if err := r.advance(gossipSteps[i+1]); err != nil {
				return nil, r.fail(ctx, gossipSteps[i+1], err)
			}
		}
	}
	if err := o.State.ClearRotation(ca.GossipRotation); err != nil {
		return nil, fmt.Errorf("rotate gossip: done, but %w", err)
	}
	res.Pools = r.last
	res.Duration = o.Now().Sub(start)
	fmt.Fprintf(o.Log, "gossip done     key %s replaced by %s in %s\n", res.Old, res.New, res.Duration.Round(time.Millisecond))
	return res, nil
}

// begin loads or starts the rotation and checks that the progress file and
// the keyring agree.
func (r *gossipRun) begin(res *GossipResult) error {
	st := r.o.State
	kr, err := st.Keyring()
	if err != nil {
		return err
	}
	var p gossipProgress
	ok, err := loadProgress(r.o.State, ca.GossipRotation, &p)
	if err != nil {
		return err
	}
	now := r.o.Now().UTC()
	switch {
	case !ok && kr.Pending == "":
		key, err := ca.NewGossipKey(r.o.Rand)
		if err != nil {
			return err
		}
		kr.Pending = key
		if err := st.SetKeyring(kr); err != nil {
			return fmt.Errorf("rotate gossip: store the new key: %w", err)
		}
		p = gossipProgress{Step: StepInstall, Old: ca.GossipFingerprint(kr.Primary), New: ca.GossipFingerprint(key), Started: now}
		fmt.Fprintf(r.o.Log, "gossip new key  %s (old key %s), kept in the state until the rotation ends\n", p.New, p.Old)
	case !ok:
		// Interrupted between storing the new key and recording the step.
		p = gossipProgress{Step: StepInstall, Old: ca.GossipFingerprint(kr.Primary), New: ca.GossipFingerprint(kr.Pending), Started: now}
		res.ResumedAt = StepInstall
	default:
		if !slices.Contains(gossipSteps, p.Step) {
			return fmt.Errorf("%w: %s: unknown step %q: remove the file to start again", ErrProgressMismatch, r.path, p.Step)
		}
		res.ResumedAt = p.Step
		if p.Step != StepConfig && kr.Pending == "" && ca.GossipFingerprint(kr.Primary) == p.New {
			// Interrupted after the state recorded the new primary.
			p.Step = StepConfig
			res.ResumedAt = StepConfig
		}
	}
	switch p.Step {
	case StepConfig:
		if ca.GossipFingerprint(kr.Primary) != p.New {
			return fmt.Errorf("%w: %s expects primary key %s, gossip.json has %s", ErrProgressMismatch, r.path, p.New, ca.GossipFingerprint(kr.Primary))
		}
		r.newKey = kr.Primary
	default:
		if ca.GossipFingerprint(kr.Pending) != p.New || ca.GossipFingerprint(kr.Primary) != p.Old {
			return fmt.Errorf("%w: %s expects old key %s and new key %s, gossip.json has primary %s and pending %s",
				ErrProgressMismatch, r.path, p.Old, p.New, ca.GossipFingerprint(kr.Primary), orNone(kr.Pending))
		}
		r.oldKey, r.newKey = kr.Primary, kr.Pending
	}
	if res.ResumedAt != "" {
		fmt.Fprintf(r.o.Log, "gossip resume   at step %q: old key %s, new key %s (started %s)\n", p.Step, p.Old, p.New, p.Started.Format(time.RFC3339))
	}
	r.prog = p
	return r.save()
}

func orNone(k string) string {
	if k == "" {
		return "none"
	}
	return ca.GossipFingerprint(k)
}

func (r *gossipRun) save() error {
	r.prog.Updated = r.o.Now().UTC()
	if err := saveProgress(r.o.State, ca.GossipRotation, r.prog); err != nil {
		return fmt.Errorf("record gossip rotation progress: %w", err)
	}
	return nil
}

func (r *gossipRun) advance(step string) error {
	r.prog.Step = step
	return r.save()
}

func (r *gossipRun) describe(step string) string {
	switch step {
	case StepInstall:
		return fmt.Sprintf("installing key %s on every member, waiting up to %s for all of them", r.prog.New, r.o.Wait)
	case StepUse:
		return fmt.Sprintf("making key %s primary on every member", r.prog.New)
	case StepRemove:
		return fmt.Sprintf("removing the old key %s from every member", r.prog.Old)
	case StepConfig:
		return fmt.Sprintf("writing encrypt = key %s into every node's config (apply)", r.prog.New)
	}
	return ""
}

func (r *gossipRun) run(ctx context.Context, step string) error {
	switch step {
	case StepInstall:
		return r.install(ctx)
	case StepUse:
		return r.use(ctx)
	case StepRemove:
		return r.remove(ctx)
	case StepConfig:
		if r.o.Apply == nil {
			return errors.New("no apply function to push the nodes' configs")
		}
		return r.o.Apply(ctx)
	}
	return fmt.Errorf("unknown step %q", step)
}

// fail wraps err with where the cluster is, listing the keyring and the
// missing members once more when the failure left no fresh listing.
func (r *gossipRun) fail(ctx context.Context, step string, err error) error {
	ge := &GossipError{Step: step, Old: r.prog.Old, New: r.prog.New, Err: err}
	var inner *GossipError
	if errors.As(err, &inner) {
		return err
	}
	if step != StepConfig && ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, r.opMax)
		if resp, lerr := r.o.Agent.KeyringList(lctx); lerr == nil {
			r.last = pools(resp, r.o.Expected)
		}
		ge.Missing, _ = missingMembers(lctx, r.o.Agent, r.o.Expected)
		cancel()
	}
	ge.Pools = r.last
	return ge
}

// partialAttempts bounds how often one keyring operation is repeated when
// only some members answered in time.
const partialAttempts = 3

// call runs one keyring operation bounded by the query timeout. Keyring
// operations are Serf queries: on a loaded machine or network some members
// answer after the query's timeout and the agent fails the whole call
// ("4/5 nodes reported success") although nothing is wrong. Every keyring
// operation is idempotent (installing an installed key, using the primary,
// removing an absent key all succeed), so such a partial answer is retried a
// bounded number of times; any other error is returned at once.
func (r *gossipRun) call(ctx context.Context, fn func(context.Context) error) error {
	var err error
	for attempt := 1; attempt <= partialAttempts; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, r.opMax)
		err = r.redact(fn(cctx))
		cancel()
		if err == nil || !isPartialAnswer(err) || ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(r.o.Log, "gossip   only some members answered in time (attempt %d of %d): %v\n", attempt, partialAttempts, err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(r.o.Poll):
		}
	}
	return err
}

// redact replaces the old and new keys in err's message by their
// fingerprints: an agent's error (a Serf or HTTP message relayed by
// consul/api) is logged and returned, and must never carry a key. The
// original error stays reachable through Unwrap.
func (r *gossipRun) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := msg
	for _, k := range []string{r.oldKey, r.newKey} {
		if k != "" {
			red = strings.ReplaceAll(red, k, "<key "+ca.GossipFingerprint(k)+">")
		}
	}
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

// redactedError is an error whose message had a key replaced.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// isPartialAnswer reports whether err is Consul's "N/M nodes reported
// success" from a keyring query that timed out on some members.
func isPartialAnswer(err error) bool {
	return strings.Contains(err.Error(), "nodes reported success")
}

func (r *gossipRun) list(ctx context.Context) ([]PoolStatus, error) {
	var ps []PoolStatus
	err := r.call(ctx, func(ctx context.Context) error {
		resp, err := r.o.Agent.KeyringList(ctx)
		if err != nil {
			return err
		}
		ps = pools(resp, r.o.Expected)
		return nil
	})
	if err == nil {
		r.last = ps
	}
	return ps, err
}

func (r *gossipRun) logPools(ps []PoolStatus) {
	for _, p := range ps {
		fmt.Fprintf(r.o.Log, "gossip   %s\n", p)
	}
}

// install installs the new key, then lists until every expected member of
// every pool reports it, installing again while some lack it (a member
// that was briefly unreachable catches up). It gives up after o.Wait.
func (r *gossipRun) install(ctx context.Context) error {
	deadline := r.o.Now().Add(r.o.Wait)
	var lastErr error
	var missing []string
	for attempt := 1; ; attempt++ {
		if err := r.call(ctx, func(ctx context.Context) error { return r.o.Agent.KeyringInstall(ctx, r.newKey) }); err != nil {
			lastErr = fmt.Errorf("install (attempt %d): %w", attempt, err)
		}
		ps, err := r.list(ctx)
		if err != nil {
			lastErr = fmt.Errorf("list: %w", err)
		}
		m, merr := missingMembers(ctx, r.o.Agent, r.o.Expected)
		if merr == nil {
			missing = m
		}
		if err == nil && merr == nil {
			short := lacking(ps, r.prog.New)
			if len(short) == 0 && len(m) == 0 {
				r.logPools(ps)
				return nil
			}
			lastErr = fmt.Errorf("pools short of the new key: %s", strings.Join(short, ", "))
			if len(short) == 0 {
				lastErr = errors.New("every live member holds the new key, but some members are not alive")
			}
		} else if merr != nil && lastErr == nil {
			lastErr = merr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !r.o.Now().Add(r.o.Poll).Before(deadline) {
			return &GossipError{Step: StepInstall, Old: r.prog.Old, New: r.prog.New, Pools: r.last, Missing: missing,
				Err: fmt.Errorf("%w after %s: %v", ErrNotEveryMember, r.o.Wait, lastErr)}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.o.Poll):
		}
	}
}

// use makes the new key primary, after checking once more that every
// member holds it, and verifies primaries where the agent reports them.
func (r *gossipRun) use(ctx context.Context) error {
	ps, err := r.list(ctx)
	if err != nil {
		return fmt.Errorf("list before use: %w", err)
	}
	if short := lacking(ps, r.prog.New); len(short) > 0 {
		return fmt.Errorf("%w: %s: refusing to use it", ErrNotEveryMember, strings.Join(short, ", "))
	}
	if err := r.call(ctx, func(ctx context.Context) error { return r.o.Agent.KeyringUse(ctx, r.newKey) }); err != nil {
		return fmt.Errorf("use: %w", err)
	}
	if ps, err = r.list(ctx); err != nil {
		return fmt.Errorf("list after use: %w", err)
	}
	reported := false
	var short []string
	for _, p := range ps {
		if p.Primary == nil {
			continue
		}
		reported = true
		if p.Primary[r.prog.New] < p.want() {
			short = append(short, fmt.Sprintf("%s: %d/%d", p.Pool, p.Primary[r.prog.New], p.want()))
		}
	}
	if len(short) > 0 {
		return fmt.Errorf("%w: %s", ErrNotPrimary, strings.Join(short, ", "))
	}
	if !reported {
		fmt.Fprintf(r.o.Log, "gossip   primary keys not reported by this Consul version: the remove step verifies them\n")
	}
	return nil
}

// remove removes the old key (refused by any member still using it as
// primary), verifies it is gone from every pool and the new key is on every
// member, then records the new key as the state's primary.
func (r *gossipRun) remove(ctx context.Context) error {
	if r.resumedAt == StepRemove {
		// The last run's remove failed, typically because a member still
		// used the old key as primary (it was down or slow during use):
		// use the new key again first; it is idempotent.
		if err := r.call(ctx, func(ctx context.Context) error { return r.o.Agent.KeyringUse(ctx, r.newKey) }); err != nil {
			return fmt.Errorf("use again before remove: %w", err)
		}
	}
	if err := r.call(ctx, func(ctx context.Context) error { return r.o.Agent.KeyringRemove(ctx, r.oldKey) }); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	ps, err := r.list(ctx)
	if err != nil {
		return fmt.Errorf("list after remove: %w", err)
	}
	if left := holding(ps, r.prog.Old); len(left) > 0 {
		return fmt.Errorf("%w: %s", ErrOldKeyRemains, strings.Join(left, ", "))
	}
	if short := lacking(ps, r.prog.New); len(short) > 0 {
		return fmt.Errorf("%w: %s", ErrNotEveryMember, strings.Join(short, ", "))
	}
	r.logPools(ps)
	if err := r.o.State.SetKeyring(&ca.Keyring{Primary: r.newKey, Previous: []string{r.oldKey}}); err != nil {
		return fmt.Errorf("record the new primary key in the state: %w", err)
	}
	return nil
}
