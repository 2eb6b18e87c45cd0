package app

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Validate checks the cluster file and prints the topology.
func Validate(c Common) error {
	t, err := inventory.Load(c.Inventory)
	if err != nil {
		return err
	}
	if c.JSON {
		// The cluster as read, and the warnings next to it.
		return c.writeJSON("inventory-validate", struct {
			*inventory.Cluster
			Warnings []inventory.Warning `json:"warnings"`
		}{t.Cluster, append([]inventory.Warning{}, t.Warnings...)})
	}
	for _, w := range t.Warnings {
		fmt.Fprintf(c.stderr(), "warning: %s\n", w)
	}
	return t.Describe(c.stdout())
}

// ImportOptions are the options of `inventory import-apigee`.
type ImportOptions struct {
	Files []string // silent config files, one per region
	Out   string   // cluster file to write ("" = Common.Inventory)
	Name  string   // cluster name ("" = derived from the first file)
	Force bool     // replace an existing cluster file
}

// ImportApigee turns Apigee silent config file(s) into a cluster file, and
// imports the gossip key and CA they name into the state directory (never
// replacing a different existing one).
func ImportApigee(c Common, o ImportOptions) error {
	out := o.Out
	if out == "" {
		out = c.Inventory
	}
	if fileExists(out) && !o.Force {
		return fmt.Errorf("%s already exists: pass --force to replace it, or --out to write elsewhere", out)
	}
	var imports []*inventory.Import
	for _, f := range o.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("reading silent config: %w", err)
		}
		im, err := inventory.ImportApigee(f, data)
		if err != nil {
			return err
		}
		imports = append(imports, im)
	}
	im, err := inventory.MergeImports(imports...)
	if err != nil {
		return err
	}
	if o.Name != "" {
		im.Cluster.Name = o.Name
	}
	yml, err := inventory.Marshal(im.Cluster)
	if err != nil {
		return err
	}
	// Check the result before writing anything, so a bad import leaves no trace.
	if _, err := inventory.Parse(out, yml); err != nil {
		return fmt.Errorf("the imported cluster does not validate (fix the silent config): %w", err)
	}

	// Secrets named by the silent config go into the state, not the cluster file.
	var caCert, caKey []byte
	var gossipFP, caFP string
	if im.CACertPath != "" || im.CAKeyPath != "" {
		if im.CACertPath == "" || im.CAKeyPath == "" {
			return errors.New("silent config names only one of PATH_TO_CA_CERT and PATH_TO_CA_KEY: give both to import the CA, or neither to let mtlsctl create one")
		}
		if caCert, err = os.ReadFile(im.CACertPath); err != nil {
			return fmt.Errorf("PATH_TO_CA_CERT: %w", err)
		}
		if caKey, err = os.ReadFile(im.CAKeyPath); err != nil {
			return fmt.Errorf("PATH_TO_CA_KEY: %w", err)
		}
	}
	// The secrets are checked before the state directory is even created.
	if im.GossipKey != "" {
		if err := ca.ValidateGossipKey(strings.TrimSpace(im.GossipKey)); err != nil {
			return fmt.Errorf("ENCRYPT_DATA: %w; nothing was written", err)
		}
	}
	if caCert != nil {
		if err := ca.ValidateCAImport(caCert, caKey); err != nil {
			return fmt.Errorf("PATH_TO_CA_CERT/PATH_TO_CA_KEY (%s): %w; nothing was written", im.CACertPath, err)
		}
	}
	if im.GossipKey != "" || caCert != nil {
		st, err := ca.Open(c.State, ca.OpenOptions{Create: true})
		if err != nil {
			return err
		}
		lock, err := st.Lock("import-apigee")
		if err != nil {
			return err
		}
		defer lock.Unlock()
		// Everything is checked before anything is written: a bad CA must
		// not leave the gossip key (or anything else) behind.
		if err := st.CheckImports(im.GossipKey, caCert, caKey); err != nil {
			what := "the silent config"
			switch {
			case errors.Is(err, ca.ErrInvalidCA) || errors.Is(err, ca.ErrCAExists):
				what = "PATH_TO_CA_CERT/PATH_TO_CA_KEY (" + im.CACertPath + ")"
			case errors.Is(err, ca.ErrGossipExists) || errors.Is(err, ca.ErrInvalidGossipKey):
				what = "ENCRYPT_DATA"
			}
			return fmt.Errorf("%s: %w; nothing was written", what, err)
		}
		if im.GossipKey != "" {
			if err := st.ImportGossipKey(im.GossipKey); err != nil {
				return fmt.Errorf("ENCRYPT_DATA: %w", err)
			}
			gossipFP = ca.GossipFingerprint(im.GossipKey)
			c.printf("imported gossip key %s into %s\n", gossipFP, c.State)
		}
		if caCert != nil {
			authority, err := st.ImportCA(caCert, caKey)
			if err != nil {
				return fmt.Errorf("importing the CA from %s: %w", im.CACertPath, err)
			}
			caFP = authority.Fingerprint()
			c.printf("imported CA %s into %s\n", caFP, c.State)
		}
	}
	if err := atomicfile.WriteFile(out, yml, 0o644); err != nil {
		return err
	}
	if c.JSON {
		doc := struct {
			ClusterFile string   `json:"cluster_file"`
			Cluster     string   `json:"cluster"`
			Nodes       int      `json:"nodes"`
			Datacenters []string `json:"datacenters"`
			GossipKey   string   `json:"gossip_key_fingerprint,omitempty"`
			CA          string   `json:"ca_fingerprint,omitempty"`
			Warnings    []string `json:"warnings"`
		}{ClusterFile: out, Cluster: im.Cluster.Name, Nodes: countNodes(im.Cluster), GossipKey: gossipFP, CA: caFP, Warnings: []string{}}
		for _, dc := range im.Cluster.Datacenters {
			doc.Datacenters = append(doc.Datacenters, dc.Name)
		}
		for _, w := range im.Warnings {
			doc.Warnings = append(doc.Warnings, fmt.Sprint(w))
		}
		return c.writeJSON("inventory-import-apigee", doc)
	}
	for _, w := range im.Warnings {
		fmt.Fprintf(c.stderr(), "warning: %s\n", w)
	}
	c.printf("wrote %s (%d nodes)\n", out, countNodes(im.Cluster))
	return nil
}

func countNodes(cl *inventory.Cluster) int {
	n := 0
	for _, dc := range cl.Datacenters {
		n += len(dc.Nodes)
	}
	return n
}

// GenerateOptions are the options of `generate`.
type GenerateOptions struct {
	CAKeyType       string // "": ecdsa-p256
	KeyType         string // "": ecdsa-p256
	CADays          int    // 0: 1825
	CertDays        int    // 0: the cluster file's certs.days, else 365
	RenewBefore     time.Duration
	NameConstraints bool
	ForceUnlock     bool // clear a state lock left by a dead run
}

// CheckKeyType refuses a key type mtlsctl does not make, as a usage error
// naming flag ("" is the default and fine).
func CheckKeyType(flag, keyType string) error {
	if err := ca.CheckKeyType(keyType); err != nil {
		return Usagef("--%s: %w", flag, err)
	}
	return nil
}

// check refuses flag values generate cannot use, as usage errors, before
// anything is read or locked.
func (o GenerateOptions) check() error {
	for _, f := range []struct{ flag, keyType string }{{"ca-key-type", o.CAKeyType}, {"key-type", o.KeyType}} {
		if err := CheckKeyType(f.flag, f.keyType); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		flag string
		days int
	}{{"--ca-days", o.CADays}, {"--cert-days", o.CertDays}} {
		if f.days < 0 {
			return Usagef("%s %d: give a positive number of days", f.flag, f.days)
		}
	}
	if o.RenewBefore < 0 {
		return Usagef("--renew-before: give zero or more days")
	}
	return nil
}

// Generate creates what is missing in the state directory.
func Generate(c Common, o GenerateOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	t, err := inventory.Load(c.Inventory)
	if err != nil {
		return err
	}
	st, err := ca.Open(c.State, ca.OpenOptions{Create: true})
	if err != nil {
		return err
	}
	lock, err := lockState(st, "generate", o.ForceUnlock)
	if err != nil {
		return err
	}
	defer lock.Unlock()

	rep, err := generateLocked(st, t, o.caOptions(t))
	if err != nil {
		return err
	}
	o.noteIdle(c, rep.GenerateReport)
	if c.JSON {
		return c.writeJSON("generate", rep)
	}
	// One line per node: buffer it, a 1,000-node report is 1,000 writes.
	w := bufio.NewWriter(c.stdout())
	if err := writeGenerateReport(w, c.State, rep, false); err != nil {
		return err
	}
	return w.Flush()
}

// caOptions are the ca package's options for o (zero values: ca's
// defaults, which are the flags' defaults).
func (o GenerateOptions) caOptions(t *inventory.Topology) ca.GenerateOptions {
	return ca.GenerateOptions{
		CA: ca.CAOptions{
			KeyType:         o.CAKeyType,
			Days:            o.CADays,
			Domain:          t.Cluster.Consul.Domain,
			NameConstraints: o.NameConstraints,
		},
		Leaf:        ca.IssueOptions{KeyType: o.KeyType},
		LeafDays:    cmp.Or(o.CertDays, t.Cluster.Certs.Days),
		RenewBefore: o.RenewBefore,
	}
}

// GenerateReport is what generate did (or, in a plan, would do): the CA,
// gossip key and leaves (ca's report), and the proxy ports it moved.
type GenerateReport struct {
	*ca.GenerateReport
	PortChanges []inventory.PortChange `json:"port_changes,omitempty"`
}

// generateLocked is generate's work, the caller holding the state lock:
// the port assignment, the credentials and the ACL tokens.
func generateLocked(st *ca.State, t *inventory.Topology, o ca.GenerateOptions) (*GenerateReport, error) {
	prev, err := st.Ports()
	if err != nil {
		return nil, err
	}
	ports, err := inventory.AssignPorts(t, prev)
	if err != nil {
		return nil, err
	}
	o.Ports = ports
	rep, err := st.Generate(t, o)
	if err != nil {
		return nil, err
	}
	if rep.ACL, err = ensureTokens(st, t, ports); err != nil {
		return nil, err
	}
	return &GenerateReport{GenerateReport: rep, PortChanges: ports.Changes(prev)}, nil
}

// noteIdle says on stderr which of the flags given could not act this
// time: those of a new CA when the CA exists, those of new certificates
// when none was issued. Not an error: generate did what was needed.
func (o GenerateOptions) noteIdle(c Common, rep *ca.GenerateReport) {
	if rep.CA.Action == ca.Kept {
		if flags := given(map[string]bool{"--ca-key-type": o.CAKeyType != "", "--ca-days": o.CADays != 0, "--name-constraints": o.NameConstraints}); flags != "" {
			fmt.Fprintf(c.stderr(), "note: %s did nothing: they configure a new CA, and the CA in %s exists and is never replaced; `mtlsctl rotate ca` with them rolls over to a new one\n", flags, c.State)
		}
	}
	issued := 0
	for _, n := range rep.Nodes {
		if n.Action != ca.Kept {
			issued++
		}
	}
	if issued == 0 {
		if flags := given(map[string]bool{"--cert-days": o.CertDays != 0, "--key-type": o.KeyType != ""}); flags != "" {
			fmt.Fprintf(c.stderr(), "note: %s did nothing: they apply to newly issued node certificates, and every node's certificate is current; `mtlsctl rotate certs %s` reissues them now\n", flags, o.leafArgs())
		}
	}
}

// given joins the names of the flags that are set, in a fixed order.
func given(set map[string]bool) string {
	var names []string
	for _, f := range []string{"--ca-key-type", "--ca-days", "--name-constraints", "--key-type", "--cert-days"} {
		if set[f] {
			names = append(names, f)
		}
	}
	return strings.Join(names, " and ")
}

// leafArgs are the leaf flags as given, for the rotate certs suggestion.
func (o GenerateOptions) leafArgs() string {
	var a []string
	if o.CertDays != 0 {
		a = append(a, fmt.Sprintf("--cert-days %d", o.CertDays))
	}
	if o.KeyType != "" {
		a = append(a, "--key-type "+o.KeyType)
	}
	return strings.Join(a, " ")
}

// ensureTokens makes the ACL tokens the cluster file needs that the state
// does not hold yet (an agent token per node, a token per service), and
// retires those of nodes and services that are gone. Nil with ACLs off.
func ensureTokens(st *ca.State, t *inventory.Topology, ports *inventory.Assignment) (*ca.ACLResult, error) {
	toks, res, err := wantTokens(st, t, ports)
	if err != nil || res == nil || res.Action == ca.Kept {
		return res, err
	}
	return res, st.SetACLTokens(toks)
}

// wantTokens is ensureTokens in memory: the tokens the state would hold
// and what changes (nil with ACLs off). It writes nothing.
func wantTokens(st *ca.State, t *inventory.Topology, ports *inventory.Assignment) (*ca.ACLTokens, *ca.ACLResult, error) {
	if !t.Cluster.ACL.Enabled {
		return nil, nil, nil
	}
	refs, err := consulcfg.NodeServices(t, ports)
	if err != nil {
		return nil, nil, err
	}
	want := make(map[string][]string, len(refs))
	for node, rs := range refs {
		for _, r := range rs {
			want[node] = append(want[node], r.ID)
		}
		if want[node] == nil {
			want[node] = []string{}
		}
	}
	toks, err := st.ACLTokens()
	if err != nil {
		return nil, nil, err
	}
	first := len(toks.Nodes) == 0
	changed, err := toks.Ensure(want, t.MultiDC(), nil)
	if err != nil {
		return nil, nil, err
	}
	res := &ca.ACLResult{Action: ca.Kept, Tokens: toks.Count()}
	if changed {
		res.Action = ca.Updated
		if first {
			res.Action = ca.Created
		}
	}
	return toks, res, nil
}

// stateTokens returns the tokens to render with (nil with ACLs off).
func stateTokens(st *ca.State, t *inventory.Topology) (map[string]consulcfg.NodeTokens, error) {
	if !t.Cluster.ACL.Enabled {
		return nil, nil
	}
	toks, err := st.ACLTokens()
	if err != nil {
		return nil, err
	}
	return renderTokens(t, toks), nil
}

// renderTokens is what the renderer needs of toks: each node's secrets.
func renderTokens(t *inventory.Topology, toks *ca.ACLTokens) map[string]consulcfg.NodeTokens {
	out := make(map[string]consulcfg.NodeTokens, len(toks.Nodes))
	for name, nt := range toks.Nodes {
		svc := make(map[string]string, len(nt.Services))
		for id, tok := range nt.Services {
			svc[id] = tok.SecretID
		}
		out[name] = consulcfg.NodeTokens{Agent: nt.Agent.SecretID, Services: svc}
		if toks.Replication != nil {
			if n := t.Node(name); n != nil && n.IsServer() && n.Datacenter != t.Cluster.Datacenters[0].Name {
				nt := out[name]
				nt.Replication = toks.Replication.SecretID
				out[name] = nt
			}
		}
	}
	return out
}

// loadBundles is the shared front half of render, plan and apply: the
// validated topology, the credentials and ports from the state, rendered.
func loadBundles(c Common) (*inventory.Topology, []consulcfg.Bundle, error) {
	t, err := inventory.Load(c.Inventory)
	if err != nil {
		return nil, nil, err
	}
	bundles, err := renderBundles(c, t)
	if err != nil {
		return nil, nil, err
	}
	return t, bundles, nil
}

// renderBundles renders every node's bundle of t from the state directory.
func renderBundles(c Common, t *inventory.Topology) ([]consulcfg.Bundle, error) {
	bundles, _, err := renderWithPorts(c, t)
	return bundles, err
}

// renderWithPorts is renderBundles that also returns the port assignment
// the bundles were rendered with.
func renderWithPorts(c Common, t *inventory.Topology) ([]consulcfg.Bundle, *inventory.Assignment, error) {
	st, err := ca.Open(c.State, ca.OpenOptions{})
	if err != nil {
		return nil, nil, err
	}
	creds, err := st.Credentials(t)
	if err != nil {
		return nil, nil, err
	}
	ports, err := statePorts(st, t)
	if err != nil {
		return nil, nil, err
	}
	tokens, err := stateTokens(st, t)
	if err != nil {
		return nil, nil, err
	}
	bundles, err := renderCreds(t, ports, creds, tokens)
	if err != nil {
		return nil, nil, err
	}
	return bundles, ports, nil
}

// renderCreds renders every node's bundle from credentials, ports and
// tokens (from the state, or previewed in memory).
func renderCreds(t *inventory.Topology, ports *inventory.Assignment, creds *ca.Credentials, tokens map[string]consulcfg.NodeTokens) ([]consulcfg.Bundle, error) {
	leaves := make(map[string]consulcfg.Leaf, len(creds.Leaves))
	for name, l := range creds.Leaves {
		leaves[name] = consulcfg.Leaf{CertPEM: l.CertPEM, KeyPEM: l.KeyPEM}
	}
	return consulcfg.Render(consulcfg.Input{
		Topology:  t,
		Ports:     ports,
		CABundle:  creds.CABundlePEM,
		Leaves:    leaves,
		GossipKey: creds.GossipKey,
		Tokens:    tokens,
	})
}

// statePorts returns the recorded port assignment, which must cover the
// topology as it is now: a node added since the last generate has no ports.
func statePorts(st *ca.State, t *inventory.Topology) (*inventory.Assignment, error) {
	prev, err := st.Ports()
	if err != nil {
		return nil, err
	}
	ports, err := inventory.AssignPorts(t, prev)
	if err != nil {
		return nil, err
	}
	if prev == nil || !ports.Equal(prev) {
		return nil, fmt.Errorf("%s: the port assignment in the state does not match the cluster file (nodes or ranges changed): run `mtlsctl generate` to record it", st.Dir())
	}
	return ports, nil
}

// Render writes every node's bundle under dir/<node>/<absolute path>.
func Render(c Common, dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: give an empty or new directory to render into", dir)
	}
	_, bundles, err := loadBundles(c)
	if err != nil {
		return err
	}
	if err := consulcfg.WriteTree(dir, bundles); err != nil {
		return err
	}
	files := 0
	for _, b := range bundles {
		files += len(b.Files)
	}
	if c.JSON {
		type file struct {
			consulcfg.File
			LocalPath string `json:"local_path"` // where render wrote it
		}
		type node struct {
			Node       string `json:"node"`
			Datacenter string `json:"datacenter"`
			Server     bool   `json:"server"`
			Generation string `json:"target_generation"`
			Files      []file `json:"files"`
		}
		doc := struct {
			Dir   string `json:"dir"`
			Files int    `json:"files"`
			Nodes []node `json:"nodes"`
		}{Dir: filepath.Clean(dir), Files: files}
		for _, b := range bundles {
			n := node{Node: b.Node, Datacenter: b.Datacenter, Server: b.Server, Generation: b.Generation}
			for _, f := range b.Files {
				n.Files = append(n.Files, file{File: f, LocalPath: filepath.Join(dir, b.Node, f.Path)})
			}
			doc.Nodes = append(doc.Nodes, n)
		}
		return c.writeJSON("render", doc)
	}
	c.printf("rendered %d files for %d nodes under %s\n", files, len(bundles), filepath.Clean(dir))
	return nil
}

// recordedPorts opens the state directory when there is one and returns it
// with the port assignment it records (nil, nil before the first generate).
func recordedPorts(c Common) (*ca.State, *inventory.Assignment, error) {
	if !fileExists(c.State) {
		return nil, nil, nil
	}
	st, err := ca.Open(c.State, ca.OpenOptions{})
	if err != nil {
		return nil, nil, err
	}
	prev, err := st.Ports()
	if err != nil {
		return nil, nil, err
	}
	return st, prev, nil
}

// Ports prints the port assignment: table, json or apigee-report. Before the
// first generate it shows what generate would record.
func Ports(c Common, format string) error {
	t, err := inventory.Load(c.Inventory)
	if err != nil {
		return err
	}
	_, prev, err := recordedPorts(c)
	if err != nil {
		return err
	}
	a, err := inventory.AssignPorts(t, prev)
	if err != nil {
		return err
	}
	if prev == nil || !a.Equal(prev) {
		fmt.Fprintln(c.stderr(), "note: this assignment is not recorded yet; `mtlsctl generate` records it")
	}
	r := consulcfg.PortReport(t, a)
	switch strings.ToLower(format) {
	case "json":
		var buf bytes.Buffer
		if err := r.WriteJSON(&buf); err != nil {
			return err
		}
		return c.writeJSON("ports", json.RawMessage(buf.Bytes()))
	case "apigee-report":
		return r.WriteApigee(c.stdout())
	default:
		return r.WriteTable(c.stdout())
	}
}
