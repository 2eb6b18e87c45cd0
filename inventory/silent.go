package inventory

import (
	"regexp"
	"strings"
)

// silentVar is one KEY=VALUE of a silent config. err is set when the value
// uses shell syntax the importer does not evaluate; it is reported only if
// the import needs the key.
type silentVar struct {
	value string
	line  int
	err   string
}

// maxSilentValue bounds a value's length after expansion.
const maxSilentValue = 64 << 10

// maxSilentFile bounds a silent config's size, and maxSilentTotal the sum
// of its values after expansion: a silent config is a short list of
// settings, and without a total a few hundred KB of B="$A$A" lines would
// expand to gigabytes.
const (
	maxSilentFile  = 1 << 20
	maxSilentTotal = 4 << 20
)

var shellNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseSilent reads a shell-style KEY=VALUE file. Lines that are not
// assignments are reported; values are unquoted and $NAME / ${NAME}
// references to earlier keys expanded. It returns nil when it refuses the
// file as a whole (too large, not UTF-8 text, expanding without bound).
func parseSilent(ps *problems, data []byte) map[string]silentVar {
	vars := map[string]silentVar{}
	if len(data) > maxSilentFile {
		ps.addLine(1, "", "the file is %d bytes, more than a silent config's %d: is it the right file?", len(data), maxSilentFile)
		return nil
	}
	if line, msg := checkText(data); msg != "" {
		ps.addLine(line, "", "%s", msg)
		return nil
	}
	total := 0
	for i, raw := range strings.Split(string(data), "\n") {
		line := i + 1
		s := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(s, "export "); ok {
			s = strings.TrimLeft(rest, " \t")
		}
		key, val, ok := strings.Cut(s, "=")
		if !ok || !shellNameRE.MatchString(key) {
			ps.addLine(line, "", "not a KEY=VALUE line: a silent config holds only assignments (and # comments)")
			continue
		}
		v, errMsg := shellValue(val, vars)
		if total += len(v); total > maxSilentTotal {
			ps.addLine(line, key, "the values expand to more than %d bytes in all (variable references doubling each line?): a silent config is a short list of settings", maxSilentTotal)
			return nil
		}
		vars[key] = silentVar{value: v, line: line, err: errMsg}
	}
	return vars
}

// shellValue evaluates the right-hand side of a shell assignment: quotes,
// backslash escapes, trailing comments and variable references. It returns a
// message instead of a value for what it does not evaluate.
func shellValue(s string, vars map[string]silentVar) (string, string) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			rest := strings.TrimLeft(s[i:], " \t")
			if rest == "" || rest[0] == '#' {
				return b.String(), ""
			}
			return "", "unquoted space in the value: quote it (KEY=\"a b\")"
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return "", "unterminated ' quote: close it on the same line"
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 2
		case c == '"':
			i++
			closed := false
			for i < len(s) && !closed {
				switch ch := s[i]; {
				case ch == '"':
					closed = true
					i++
				case ch == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0:
					b.WriteByte(s[i+1])
					i += 2
				case ch == '$':
					n, msg := expand(s[i:], vars, &b)
					if msg != "" {
						return "", msg
					}
					i += n
				case ch == '`':
					return "", "command substitution (`...`) is not evaluated: write the literal value"
				default:
					b.WriteByte(ch)
					i++
				}
			}
			if !closed {
				return "", "unterminated \" quote: close it on the same line"
			}
		case c == '\\':
			if i+1 < len(s) {
				b.WriteByte(s[i+1])
			}
			i += 2
		case c == '$':
			n, msg := expand(s[i:], vars, &b)
			if msg != "" {
				return "", msg
			}
			i += n
		case c == '`':
			return "", "command substitution (`...`) is not evaluated: write the literal value"
		case c == ';' || c == '|' || c == '&' || c == '<' || c == '>' || c == '(' || c == ')':
			return "", "shell syntax in the value is not evaluated: quote it or write the literal value"
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), ""
}

// expand writes the value of the reference at the start of s ("$NAME",
// "${NAME}" or a lone "$") and returns how many bytes it used.
func expand(s string, vars map[string]silentVar, b *strings.Builder) (int, string) {
	if len(s) < 2 {
		b.WriteByte('$')
		return 1, ""
	}
	var name string
	var n int
	switch {
	case s[1] == '(':
		return 0, "command substitution ($(...)) is not evaluated: write the literal value"
	case s[1] == '{':
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return 0, "unterminated ${: close it"
		}
		name, n = s[2:end], end+1
	default:
		j := 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || j > 1 && s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j == 1 {
			b.WriteByte('$')
			return 1, ""
		}
		name, n = s[1:j], j
	}
	if !shellNameRE.MatchString(name) {
		return 0, "${" + name + "} is not a plain variable reference: write the literal value"
	}
	v, ok := vars[name]
	switch {
	case !ok:
		return 0, "refers to $" + name + ", which is not set earlier in the file: write the literal value"
	case v.err != "":
		return 0, "refers to $" + name + ", which cannot be evaluated: " + v.err
	}
	if b.Len()+len(v.value) > maxSilentValue {
		return 0, "the value grows past 64 KiB through references: write it out"
	}
	b.WriteString(v.value)
	return n, ""
}
