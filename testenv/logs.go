package testenv

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"sync"
)

// LogRecorder is a slog.Handler that keeps the records at its level and above, for tests that
// check what a component logs at a given level — and what it does not. Attributes added with
// Logger.With are kept on each record; groups are kept as nested group attributes.
type LogRecorder struct {
	level  slog.Leveler
	attrs  []slog.Attr // from WithAttrs, outermost group first
	groups []string
	st     *recorderState
}

type recorderState struct {
	mu      sync.Mutex
	records []slog.Record
}

// NewLogRecorder returns a recorder of the records at level and above.
func NewLogRecorder(level slog.Level) *LogRecorder {
	return &LogRecorder{level: level, st: &recorderState{}}
}

// Enabled reports whether level is at the recorder's level or above.
func (r *LogRecorder) Enabled(_ context.Context, level slog.Level) bool {
	return level >= r.level.Level()
}

// Handle keeps a copy of rec, with the attributes and groups of WithAttrs and WithGroup.
func (r *LogRecorder) Handle(_ context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	var own []slog.Attr
	rec.Attrs(func(a slog.Attr) bool { own = append(own, a); return true })
	for i := len(r.groups) - 1; i >= 0; i-- {
		own = []slog.Attr{slog.Attr{Key: r.groups[i], Value: slog.GroupValue(own...)}}
	}
	out.AddAttrs(r.attrs...)
	out.AddAttrs(own...)
	r.st.mu.Lock()
	r.st.records = append(r.st.records, out)
	r.st.mu.Unlock()
	return nil
}

// WithAttrs returns a recorder that adds attrs to every record; it shares the records.
func (r *LogRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *r
	for i := len(r.groups) - 1; i >= 0; i-- {
		attrs = []slog.Attr{{Key: r.groups[i], Value: slog.GroupValue(attrs...)}}
	}
	c.attrs = append(slices.Clip(r.attrs), attrs...)
	return &c
}

// WithGroup returns a recorder that puts the attributes of later records and WithAttrs calls
// in group name; it shares the records.
func (r *LogRecorder) WithGroup(name string) slog.Handler {
	if name == "" {
		return r
	}
	c := *r
	c.groups = append(slices.Clip(r.groups), name)
	return &c
}

// Records returns the records kept so far, oldest first.
func (r *LogRecorder) Records() []slog.Record {
	r.st.mu.Lock()
	defer r.st.mu.Unlock()
	return slices.Clone(r.st.records)
}

// Find returns the first record kept with message msg.
func (r *LogRecorder) Find(msg string) (slog.Record, bool) {
	for _, rec := range r.Records() {
		if rec.Message == msg {
			return rec, true
		}
	}
	return slog.Record{}, false
}

// LogAttr returns the value of rec's top-level attribute key.
func LogAttr(rec slog.Record, key string) (slog.Value, bool) {
	var v slog.Value
	found := false
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v, found = a.Value, true
			return false
		}
		return true
	})
	return v, found
}

// LogText renders rec as slog's text handler would (without the time), so that a test can
// look for a string anywhere in it: message, keys and values, nested groups and errors.
func LogText(rec slog.Record) string {
	var b bytes.Buffer
	h := slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug - 100, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	_ = h.Handle(context.Background(), rec)
	return b.String()
}
