package transform

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of Parse. Each *SpecError wraps one of them, so errors.Is works on the
// SpecErrors that Parse returns.
var (
	// ErrSyntax means the file is not one well-formed YAML document.
	ErrSyntax = errors.New("YAML syntax error")
	// ErrUnknownKey means a mapping holds a key the format does not define, including an
	// unknown step kind.
	ErrUnknownKey = errors.New("unknown key")
	// ErrDuplicateKey means a mapping holds the same key twice.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrRequired means a required field is missing or empty.
	ErrRequired = errors.New("required field missing")
	// ErrInvalidValue means a field holds a value of the wrong shape or outside its allowed
	// set: an unknown type or policy, a bad name, a target with both or neither store.
	ErrInvalidValue = errors.New("invalid value")
	// ErrInvalidPath means a dotted path is malformed or touches a key field.
	ErrInvalidPath = errors.New("invalid path")
	// ErrStepKind means a step names zero or several kinds.
	ErrStepKind = errors.New("step needs exactly one kind")
	// ErrIrreversible means a forward step has no derived reverse and the spec gives no
	// explicit reverse list.
	ErrIrreversible = errors.New("irreversible step")
	// ErrEnv means a ${NAME} reference is malformed, names a variable that is unset or empty,
	// or stands where references are not expanded (a CEL expression).
	ErrEnv = errors.New("environment reference")
)

// Sentinel errors of Forward and Reverse, wrapped in a *StepError. ErrCEL is also wrapped by
// the *SpecError of an expression that does not compile.
var (
	// ErrMissingKey means the document lacks the key field of its side (key.source for
	// Forward; key.target, the partition or sort attribute for Reverse).
	ErrMissingKey = errors.New("document has no key field")
	// ErrKeyConflict means the document already holds the field the key is to be moved to, or
	// a sort attribute with another value than the spec's constant.
	ErrKeyConflict = errors.New("key field conflict")
	// ErrConvert means a convert step met a value it cannot convert exactly, and its on_error
	// policy is fail.
	ErrConvert = errors.New("conversion failed")
	// ErrCEL means a CEL expression failed to compile or to evaluate (including exceeding the
	// cost limit), or returned a value with no BSON equivalent.
	ErrCEL = errors.New("CEL expression failed")
	// ErrPathConflict means a step would write through a field that is not a document, or a
	// rename's destination already exists. Parse wraps it too, in the SpecError of a step that
	// writes a path an earlier step of its list wrote or moved away (see "Path conflicts").
	ErrPathConflict = errors.New("path conflict")
)

// SpecError is one problem found in a spec file, located by line and column (1-based; 0 when
// unknown) and by its YAML path such as "forward[2].convert.to".
type SpecError struct {
	File   string
	Line   int
	Column int
	Path   string
	Msg    string
	// Err is the sentinel naming the kind of problem (ErrRequired, ErrInvalidPath, …).
	Err error
}

// Error prints "file:line:col: path: msg".
func (e *SpecError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the sentinel.
func (e *SpecError) Unwrap() error { return e.Err }

// SpecErrors is every problem Parse found in one file, in file order.
type SpecErrors []*SpecError

// Error prints one problem per line.
func (es SpecErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As look into every problem.
func (es SpecErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// StepError is a failure of Forward or Reverse at one step. Step is -1 and Kind is "key" when
// the failure is in the mapping of the key fields, which runs before the forward steps (the check
// that the source key exists) and after them (the move to the target key), and before the
// reverse steps.
type StepError struct {
	Direction string // "forward" or "reverse"
	Step      int
	Kind      string
	Path      string
	Err       error
}

// Error prints e.g. "forward[3] convert age: conversion failed: …".
func (e *StepError) Error() string {
	if e.Step < 0 {
		return fmt.Sprintf("%s key %s: %v", e.Direction, e.Path, e.Err)
	}
	return fmt.Sprintf("%s[%d] %s %s: %v", e.Direction, e.Step, e.Kind, e.Path, e.Err)
}

// Unwrap returns the underlying error, which wraps one of the sentinels.
func (e *StepError) Unwrap() error { return e.Err }
