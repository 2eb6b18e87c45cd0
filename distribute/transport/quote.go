package transport

import "strings"

// Quote returns s as one word for a POSIX shell: single-quoted, with each
// single quote written as '\”. Every byte other than ' is literal inside
// single quotes, so the result is safe for any s (mtlsctl also refuses
// control characters in node paths before they get here).
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
