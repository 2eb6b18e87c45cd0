package inventory

import (
	"strings"
	"testing"
)

// certs.days: the validity generate gives new node certificates (issue 9, item 2).
func TestCertsDays(t *testing.T) {
	tests := []struct{ block, msg string }{
		{"certs:\n  days: 90\n", ""},
		{"certs:\n  days: 0\n", `certs.days: days "0" is not a whole number of days from 1 to 36500`},
		{"certs:\n  days: forever\n", "certs.days: days \"forever\""},
		{"certs:\n  days: 40000\n", "from 1 to 36500"},
		{"certs:\n  weeks: 3\n", "weeks"},
	}
	for _, tt := range tests {
		top, err := Parse("cluster.yaml", []byte(baseYAML+tt.block))
		if tt.msg == "" {
			if err != nil || top.Cluster.Certs.Days != 90 {
				t.Fatalf("%q: %v", tt.block, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%q: err = %v, want %q", tt.block, err, tt.msg)
		}
	}
}
