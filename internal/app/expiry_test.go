package app

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// An expired certificate is a failure (ErrReported, exit 1), not a
// warning; its fix is generate then apply (rotate certs needs valid
// leaves), and the CA's is rotate ca.
func TestCheckExpirationExpired(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	out := &bytes.Buffer{}
	c := Common{Inventory: filepath.Join("..", "..", "examples", "edge-5.yaml"), State: filepath.Join(t.TempDir(), "state"), Stdout: out, Stderr: &bytes.Buffer{}}
	if err := Generate(c, GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	check := func(days int) (string, error) {
		out.Reset()
		c.Now = func() time.Time { return time.Now().AddDate(0, 0, days) }
		err := CheckExpiration(context.Background(), c, DistOptions{}, ExpiryOptions{WarnDays: 30})
		return out.String(), err
	}

	text, err := check(340)
	var warn ExpiryWarning
	if !errors.As(err, &warn) || warn.Certs != 5 || !errors.Is(err, ErrReported) {
		t.Errorf("leaves within 30 days: %v, want an ExpiryWarning for 5\n%s", err, text)
	}

	text, err = check(400)
	if err == nil || errors.As(err, &warn) || !errors.Is(err, ErrReported) {
		t.Fatalf("expired leaves: %v, want a failure, not a warning\n%s", err, text)
	}
	if !strings.Contains(err.Error(), "6 certificate(s): 1 ok, 5 expired") {
		t.Errorf("error %q", err)
	}
	if !strings.Contains(text, "n1: expired on ") || !strings.Contains(text, "run `mtlsctl generate`, then `mtlsctl apply`") || !regexpMatchT(`(?m)^n1\s+server\s+\S+\s+\S+ \S+ UTC\s+-3\d\s+expired$`, text) {
		t.Errorf("text:\n%s", text)
	}

	text, err = check(1900)
	if err == nil || errors.As(err, &warn) || !strings.Contains(text, "ca: expired on ") || !strings.Contains(text, "run `mtlsctl rotate ca`") {
		t.Errorf("expired CA: %v\n%s", err, text)
	}
}

func regexpMatchT(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
