package transform

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// redactedMark stands where credentials were removed.
const redactedMark = "REDACTED"

// RedactURI returns s, one connection string or URL, with its credentials replaced by
// REDACTED: the user information, user name included (mongodb://user:pass@h/ becomes
// mongodb://REDACTED@h/), and the values of secret query parameters (see RedactText). It never
// fails and never returns a part of the user information, even of a malformed URI: the user
// information is everything from "://" (or the start, without one) to the last "@", as the
// MongoDB driver reads the first "@" and a password may hold an unescaped one. Use it on every
// URI before printing it.
func RedactURI(s string) string { return redactURI(s, false) }

// RedactText returns s, any text such as an error message, with the credentials of every URI
// in it (a scheme, "://", and everything up to the next space or quote) replaced as RedactURI
// does. The secret query parameters are authMechanismProperties (which may hold an
// AWS_SESSION_TOKEN) and those whose name contains password, passwd, secret, token,
// signature, credential, apikey, api_key, accesskey or access_key, in any case.
func RedactText(s string) string { return redactText(s, false) }

var (
	// refsRE matches text made only of ${NAME} references and colons.
	refsRE = regexp.MustCompile(`^(?:\$\{[A-Za-z_][A-Za-z0-9_]*\}|:)+$`)
	// schemeRE matches the scheme before a "://".
	schemeRE = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*$`)
)

var secretParamParts = []string{"password", "passwd", "secret", "token", "signature", "credential", "apikey", "api_key", "accesskey", "access_key"}

func secretParam(name string) bool {
	name = strings.ToLower(name)
	if name == "authmechanismproperties" {
		return true
	}
	for _, p := range secretParamParts {
		if strings.Contains(name, p) {
			return true
		}
	}
	return false
}

// redactURI redacts one URI. With keepRefs, user information or a secret parameter's value
// made only of ${NAME} references is kept as written: a spec's stored text shows where its
// credentials come from.
func redactURI(s string, keepRefs bool) string {
	var b strings.Builder
	rest := s
	if i := strings.Index(s, "://"); i >= 0 {
		b.WriteString(s[:i+3])
		rest = s[i+3:]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if ui := rest[:at]; keepRefs && onlyRefs(ui, true) {
			b.WriteString(ui)
		} else {
			b.WriteString(redactedMark)
		}
		b.WriteByte('@')
		rest = rest[at+1:]
	}
	q := strings.IndexByte(rest, '?')
	if q < 0 {
		b.WriteString(rest)
		return b.String()
	}
	b.WriteString(rest[:q+1])
	query, frag := rest[q+1:], ""
	if h := strings.IndexByte(query, '#'); h >= 0 {
		query, frag = query[:h], query[h:]
	}
	start := 0
	for i := 0; i <= len(query); i++ {
		if i < len(query) && query[i] != '&' && query[i] != ';' {
			continue
		}
		param := query[start:i]
		if name, val, ok := strings.Cut(param, "="); ok && secretParam(name) && val != "" &&
			!(keepRefs && onlyRefs(val, false)) {
			param = name + "=" + redactedMark
		}
		b.WriteString(param)
		if i < len(query) {
			b.WriteByte(query[i])
		}
		start = i + 1
	}
	b.WriteString(frag)
	return b.String()
}

// onlyRefs reports whether s is made only of ${NAME} references, and colons if colons is set.
func onlyRefs(s string, colons bool) bool {
	return strings.Contains(s, "${") && refsRE.MatchString(s) && (colons || !strings.Contains(s, ":"))
}

// uriEnd reports whether c ends a URI inside text.
func uriEnd(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\f', '\v', '"', '\'', '`', '<', '>':
		return true
	}
	return false
}

// redactText redacts every URI in s (see RedactText).
func redactText(s string, keepRefs bool) string {
	var b strings.Builder
	done := 0 // s[:done] is written to b
	for {
		i := strings.Index(s[done:], "://")
		if i < 0 {
			break
		}
		i += done
		start := i - len(schemeRE.FindString(s[done:i]))
		end := i + 3
		for end < len(s) && !uriEnd(s[end]) {
			end++
		}
		b.WriteString(s[done:start])
		b.WriteString(redactURI(s[start:end], keepRefs))
		done = end
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// redactValue redacts one YAML string: as a whole when it starts with a URI (a password may
// hold a space), else every URI in it.
func redactValue(s string, keepRefs bool) string {
	if i := strings.Index(s, "://"); i > 0 && len(schemeRE.FindString(s[:i])) == i {
		return redactURI(s, keepRefs)
	}
	return redactText(s, keepRefs)
}

// redactSpecText returns the text of a spec file as the catalog may store it: every URI's user
// information and secret parameters replaced by REDACTED, except those written as ${NAME}
// references. It edits the file's text, so the layout and comments are kept, and checks that
// the result reads as the file's YAML tree with every string and comment redacted. When it
// does not (a credential spelled with YAML escapes or folded over lines, or an edit that
// changed the structure), it encodes that redacted tree instead, losing the layout but not
// the content. ok is false if even that fails, which would be a bug.
func redactSpecText(data []byte) (text string, ok bool) {
	var want yaml.Node
	if err := yaml.Unmarshal(data, &want); err != nil {
		return "", false
	}
	walkNodes(&want, func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode {
			n.Value = redactValue(n.Value, true)
		}
		n.HeadComment = redactText(n.HeadComment, true)
		n.LineComment = redactText(n.LineComment, true)
		n.FootComment = redactText(n.FootComment, true)
	})
	if text = redactText(string(data), true); reads(text, &want) {
		return text, true
	}
	out, err := yaml.Marshal(&want)
	if err != nil || !reads(string(out), &want) {
		return "", false
	}
	return string(out), true
}

// reads reports whether text decodes to the tree want (comments, styles and positions aside)
// and holds no credential in a comment.
func reads(text string, want *yaml.Node) bool {
	var got yaml.Node
	if err := yaml.Unmarshal([]byte(text), &got); err != nil || !sameTree(&got, want) {
		return false
	}
	ok := true
	walkNodes(&got, func(n *yaml.Node) {
		for _, c := range []string{n.HeadComment, n.LineComment, n.FootComment} {
			if redactText(c, true) != c {
				ok = false
			}
		}
	})
	return ok
}

// sameTree compares two YAML trees by kind, tag, value and children.
func sameTree(a, b *yaml.Node) bool {
	if a.Kind != b.Kind || a.ShortTag() != b.ShortTag() || a.Value != b.Value || len(a.Content) != len(b.Content) {
		return false
	}
	for i := range a.Content {
		if !sameTree(a.Content[i], b.Content[i]) {
			return false
		}
	}
	return true
}

// walkNodes calls fn on n and every node under it, not following aliases.
func walkNodes(n *yaml.Node, fn func(*yaml.Node)) {
	fn(n)
	for _, c := range n.Content {
		walkNodes(c, fn)
	}
}
