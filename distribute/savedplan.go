package distribute

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
)

// planVersion is the saved-plan format's version.
const planVersion = 2 // 2: node plans name target_generation and ssh_address

// SavePlan writes p to file (0600, atomically) for a later `apply FILE`. A
// saved plan holds, per node, the bundle's generation (a hash of every
// file), what the node held when planned (Observed) and the files that
// would change, with fingerprints and redacted diffs: no file content and
// no secret.
func SavePlan(file string, p *PlanResult) error {
	if err := p.Err(); err != nil {
		return fmt.Errorf("a plan with unreachable nodes cannot be saved: %w", err)
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(file, append(data, '\n'), 0o600)
}

// LoadPlan reads a plan written by SavePlan. Attach it to the bundles before
// applying it.
func LoadPlan(file string) (*PlanResult, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("saved plan: %w", err)
	}
	p := &PlanResult{}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("saved plan %s is not a plan file (%v): make one with `mtlsctl plan -out FILE`", file, err)
	}
	if p.Version != planVersion {
		return nil, fmt.Errorf("saved plan %s has format version %d, this mtlsctl reads version %d: plan again", file, p.Version, planVersion)
	}
	for i, np := range p.Nodes {
		if np == nil || np.Node == "" || np.Generation == "" {
			return nil, fmt.Errorf("saved plan %s: nodes[%d] is incomplete: plan again", file, i)
		}
	}
	return p, nil
}

// Attach matches a loaded plan to the bundles rendered now: every node of
// the plan must have a bundle with the same generation (the same files,
// modes and owners), and every bundle a node in the plan. Otherwise the
// state or the cluster file changed since the plan and ErrStalePlan says
// which node.
func (p *PlanResult) Attach(bundles []consulcfg.Bundle) error {
	byNode := map[string]*consulcfg.Bundle{}
	for i := range bundles {
		byNode[bundles[i].Node] = &bundles[i]
	}
	var errs []error
	seen := map[string]bool{}
	for _, np := range p.Nodes {
		seen[np.Node] = true
		b := byNode[np.Node]
		switch {
		case b == nil:
			errs = append(errs, fmt.Errorf("%w: node %s is in the plan but no longer in the cluster file", ErrStalePlan, np.Node))
		case b.Generation != np.Generation:
			errs = append(errs, fmt.Errorf("%w: node %s: the plan pushes generation %s, the state now renders %s (the state or the cluster file changed since the plan)",
				ErrStalePlan, np.Node, np.Generation, b.Generation))
		default:
			np.bundle = b
		}
	}
	for _, b := range bundles {
		if !seen[b.Node] {
			errs = append(errs, fmt.Errorf("%w: node %s is not in the plan (it was planned with other --nodes, or added since)", ErrStalePlan, b.Node))
		}
	}
	return errors.Join(errs...)
}

// digest is a fingerprint of what the node holds for bundle b: its
// generation and, for each bundle and node-state path, whether it is a
// regular file, its hash, mode and owner. Two inspections give the same
// digest exactly when an apply would find the same node.
func (r *remoteState) digest(b *consulcfg.Bundle, stateDir string) string {
	h := sha256.New()
	fmt.Fprintf(h, "generation %q\n", r.Generation)
	paths := []string{}
	for _, f := range b.Files {
		paths = append(paths, f.Path)
	}
	for _, name := range []string{manifestJSON, manifestSums, genFile} {
		paths = append(paths, path.Join(stateDir, name))
	}
	for _, p := range paths {
		f := r.file(p)
		fmt.Fprintf(h, "%q %t %t %s %o %s %s\n", p, f.Exists, f.Regular, f.SHA256, f.Mode.Perm(), f.Owner, f.Group)
		if f.Link != "" {
			// Only for links, so the digests of every other state stay
			// what earlier versions computed.
			fmt.Fprintf(h, "link %q\n", f.Link)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:32]
}
