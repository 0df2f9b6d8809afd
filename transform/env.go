package transform

import (
	"fmt"
	"os"
	"strings"
)

// ParseOption configures Parse and Load.
type ParseOption func(*parseConfig)

type parseConfig struct {
	lookupEnv func(name string) (string, bool)
}

func newParseConfig(opts []ParseOption) parseConfig {
	c := parseConfig{lookupEnv: os.LookupEnv}
	for _, o := range opts {
		o(&c)
	}
	if c.lookupEnv == nil {
		c.lookupEnv = func(string) (string, bool) { return "", false }
	}
	return c
}

// WithLookupEnv sets where ${NAME} references find their values, overriding the default
// os.LookupEnv. A nil lookup means that no variable is set.
func WithLookupEnv(lookup func(name string) (value string, ok bool)) ParseOption {
	return func(c *parseConfig) { c.lookupEnv = lookup }
}

// envError is why a string's references could not be expanded. It never holds any of the
// string's text, which may be part of a password.
type envError struct {
	name   string // the variable, when the reference is well formed
	offset int    // of the "${" in the string, in bytes
	why    string
}

func (e *envError) Error() string {
	if e.name != "" {
		return fmt.Sprintf("environment variable %s %s", e.name, e.why)
	}
	return fmt.Sprintf("malformed reference at byte %d of the value: %s", e.offset, e.why)
}

// expandEnv replaces each ${NAME} in s by the variable's value and each $${ by a literal ${.
// Any other $ is itself. NAME matches [A-Za-z_][A-Za-z0-9_]*; an unset or empty variable is
// an error. Values are inserted as they are and not expanded again.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", &envError{offset: i, why: "${ has no closing }; write $${ for a literal ${"}
			}
			name := s[i+2 : i+end]
			if !validEnvName(name) {
				return "", &envError{offset: i, why: "want ${NAME}, NAME made of letters, digits and _ and not starting with a digit; write $${ for a literal ${"}
			}
			v, ok := lookup(name)
			switch {
			case !ok:
				return "", &envError{name: name, offset: i, why: "is not set"}
			case v == "":
				return "", &envError{name: name, offset: i, why: "is set but empty"}
			}
			b.WriteString(v)
			i += end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}

func validEnvName(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// hasEnvRef reports whether s holds a ${ that is not the escape $${.
func hasEnvRef(s string) bool {
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			i += 2
		case strings.HasPrefix(s[i:], "${"):
			return true
		}
	}
	return false
}
