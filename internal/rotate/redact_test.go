package rotate

import (
	"errors"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/ca"
)

// TestRedactAgentError checks that an agent error echoing a gossip key is
// shown with the key's fingerprint, and still unwraps to the cause.
func TestRedactAgentError(t *testing.T) {
	const oldKey, newKey = "T2xkS2V5T2xkS2V5T2xkSw==", "TmV3S2V5TmV3S2V5TmV3Sw=="
	r := &gossipRun{oldKey: oldKey, newKey: newKey}
	cause := errors.New("Unexpected response code: 500 (key " + newKey + " rejected, old " + oldKey + ")")
	tests := []struct {
		name string
		in   error
		want string // substring of the redacted message
	}{
		{"nil", nil, ""},
		{"no key", errors.New("3/4 nodes reported success"), "3/4 nodes reported success"},
		{"both keys", cause, ca.GossipFingerprint(newKey)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.redact(tt.in)
			if tt.in == nil {
				if got != nil {
					t.Fatalf("redact(nil) = %v", got)
				}
				return
			}
			msg := got.Error()
			if strings.Contains(msg, oldKey) || strings.Contains(msg, newKey) {
				t.Fatal("a gossip key is in the error message")
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("message %q lacks %q", msg, tt.want)
			}
			if !errors.Is(got, tt.in) {
				t.Error("the cause is not reachable with errors.Is")
			}
		})
	}
}
