package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func addFileSeeds(f *testing.F, pattern string) {
	paths, err := filepath.Glob(pattern)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParse: Parse never panics, fails only with a *ValidationError, and what
// it accepts survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	addFileSeeds(f, "../examples/*.yaml")
	f.Add([]byte(baseYAML))
	f.Add([]byte(baseYAML + "mesh:\n  proxy_user: consul\n  allow:\n    - {from: router, to: qpid}\n"))
	f.Add([]byte(strings.Replace(baseYAML, "postgres: 10300-10399", "egress: 10700-10700\n  openldap: 10200-10200", 1) + "mesh: {enabled: false}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error is not a *ValidationError with problems: %v", err)
			}
			return
		}
		if _, err := AssignPorts(top, nil); err != nil {
			t.Fatalf("valid topology but AssignPorts: %v", err)
		}
		checkRoundTrip(t, top)
	})
}

// FuzzImportApigee: ImportApigee never panics, and what it accepts marshals
// to a cluster file that Parse accepts unchanged.
func FuzzImportApigee(f *testing.F) {
	addFileSeeds(f, "testdata/*.conf")
	f.Add([]byte(silentBase))
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := ImportApigee("fuzz.conf", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error is not a *ValidationError with problems: %v", err)
			}
			return
		}
		out, err := Marshal(im.Cluster)
		if err != nil {
			t.Fatal(err)
		}
		top, err := Parse("imported.yaml", out)
		if err != nil {
			t.Fatalf("import does not parse back: %v\n%s", err, out)
		}
		if !sameCluster(im.Cluster, top.Cluster) {
			t.Fatalf("round trip changed the cluster:\n%s", out)
		}
	})
}
