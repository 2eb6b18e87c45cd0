package cmd

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/inventory"
)

var backtickRE = regexp.MustCompile("`([^`]+)`")

// readmeNodePaths returns the path patterns of the README's "What lands on
// a node" table, with the cluster's directories put in: each row's first
// cell names a path, then siblings in the same directory (`a/b.pem`,
// `c.pem`); {x,y} lists alternatives; <name> and * stand for one path
// element; a trailing / for anything below.
func readmeNodePaths(t *testing.T, cl *inventory.Cluster) []*regexp.Regexp {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start := strings.Index(doc, "## What lands on a node\n")
	if start < 0 {
		t.Fatal(`README.md has no "## What lands on a node" section`)
	}
	section := doc[start+3:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	dirs := strings.NewReplacer(
		"<tls_dir>", cl.Consul.TLSDir,
		"<config_dir>", cl.Consul.ConfigDir,
		"<token_dir>", cl.ACL.TokenDir,
		"<unit_dir>", cl.Mesh.UnitDir,
		"<node_state_dir>", cl.NodeStateDir,
	)
	var pats []*regexp.Regexp
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.SplitN(line[1:], "|", 2)[0]
		dir := ""
		for _, m := range backtickRE.FindAllStringSubmatch(cell, -1) {
			p := dirs.Replace(m[1])
			switch {
			case strings.HasPrefix(p, "/"):
				dir = p[:strings.LastIndex(p, "/")+1]
			case dir != "" && !strings.HasPrefix(p, "~"):
				p = dir + p
			default:
				continue
			}
			pats = append(pats, pathPattern(t, p))
		}
	}
	if len(pats) == 0 {
		t.Fatal("no paths in the README's node table")
	}
	return pats
}

func pathPattern(t *testing.T, p string) *regexp.Regexp {
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '<':
			j := strings.IndexByte(p[i:], '>')
			if j < 0 {
				t.Fatalf("README path %q: unclosed <", p)
			}
			re.WriteString("[^/]+")
			i += j
		case '*':
			re.WriteString("[^/]*")
		case '{':
			j := strings.IndexByte(p[i:], '}')
			if j < 0 {
				t.Fatalf("README path %q: unclosed {", p)
			}
			var alts []string
			for _, a := range strings.Split(p[i+1:i+j], ",") {
				alts = append(alts, strings.ReplaceAll(regexp.QuoteMeta(a), `\*`, "[^/]*"))
			}
			re.WriteString("(?:" + strings.Join(alts, "|") + ")")
			i += j
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	s := re.String()
	if strings.HasSuffix(s, "/") || strings.HasSuffix(s, "/)") {
		s += ".*"
	}
	return regexp.MustCompile(s + "$")
}

// TestReadmeListsEveryNodeFile renders every example topology (with a
// generated state) and checks that each file of each bundle is named by a
// line of the README's "What lands on a node" table, so the list stays true.
func TestReadmeListsEveryNodeFile(t *testing.T) {
	examples, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, inv := range examples {
		t.Run(filepath.Base(inv), func(t *testing.T) {
			topo, err := inventory.Load(inv)
			if err != nil {
				t.Fatal(err)
			}
			pats := readmeNodePaths(t, topo.Cluster)
			dir := t.TempDir()
			state, out := filepath.Join(dir, "state"), filepath.Join(dir, "out")
			for _, args := range [][]string{{"generate"}, {"render", "--out", out}} {
				if code, _, errOut := run(t, append([]string{"-i", inv, "--state", state}, args...)...); code != 0 {
					t.Fatalf("%v: exit %d: %s", args, code, errOut)
				}
			}
			files := 0
			err = filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(out, p)
				node, onNode, _ := strings.Cut(filepath.ToSlash(rel), "/")
				onNode = "/" + onNode
				files++
				for _, re := range pats {
					if re.MatchString(onNode) {
						return nil
					}
				}
				t.Errorf("node %s gets %s, which the README's \"What lands on a node\" table does not list", node, onNode)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if files == 0 {
				t.Fatal("render wrote no files")
			}
		})
	}
}

func TestReadmePathPattern(t *testing.T) {
	for _, tc := range []struct {
		pat, path string
		match     bool
	}{
		{"/a/{x,y.json,b/}", "/a/y.json", true},
		{"/a/{x,y.json,b/}", "/a/b/c/d", true},
		{"/a/{x,y.json,b/}", "/a/z", false},
		{"/u/mtlsctl-proxy-<service>.service", "/u/mtlsctl-proxy-zk-2181-1.service", true},
		{"/u/mtlsctl-proxy-<service>.service", "/u/x/mtlsctl-proxy-zk.service", false},
	} {
		if got := pathPattern(t, tc.pat).MatchString(tc.path); got != tc.match {
			t.Errorf("%s ~ %s: %v, want %v", tc.pat, tc.path, got, tc.match)
		}
	}
}
