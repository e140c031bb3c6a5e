package cluster

// Adapters that route the hashicorp libraries' logs into log/slog:
// hashicorp/raft takes an hclog.Logger, memberlist a standard *log.Logger
// whose lines start with "[DEBUG]", "[INFO]", "[WARN]" or "[ERR]".
//
// The library's logger name goes into the "logger" attribute (raft,
// raft.net, memberlist, ...), and the "error" key raft uses becomes "err",
// the key the rest of Raftmail uses.

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// slogLevelTrace is where hclog's TRACE lands: below slog's DEBUG.
const slogLevelTrace = slog.LevelDebug - 4

// NewHCLogger returns an hclog.Logger that writes to l. Records below level
// are dropped before they reach l (raft logs a great deal at DEBUG, which is
// hclog's default; pass hclog.Info unless debugging raft). l's handler
// filters further. SetLevel on the result or on any logger derived from it
// (With, Named, ResetNamed) changes the level of all of them.
func NewHCLogger(l *slog.Logger, name string, level hclog.Level) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	h := &hcLogger{
		base:  l,
		name:  name,
		level: new(atomic.Int32),
	}
	h.SetLevel(level)
	h.sl = h.derive()
	return h
}

// hcLogger implements hclog.Logger over slog. It is immutable but for the
// level, which is shared with every logger derived from it.
type hcLogger struct {
	base    *slog.Logger  // as passed to NewHCLogger, without name or implied args
	name    string        // dotted name, "" for none
	implied []any         // With args: alternating key, value; keys unique
	level   *atomic.Int32 // hclog.Level, shared
	sl      *slog.Logger  // base with name and implied args attached
}

var _ hclog.Logger = (*hcLogger)(nil)

func (h *hcLogger) derive() *slog.Logger {
	var attrs []slog.Attr
	if h.name != "" {
		attrs = append(attrs, slog.String("logger", h.name))
	}
	attrs = append(attrs, hcArgsToAttrs(h.implied)...)
	if len(attrs) == 0 {
		return h.base
	}
	return slog.New(h.base.Handler().WithAttrs(attrs))
}

func (h *hcLogger) clone() *hcLogger {
	c := *h
	return &c
}

// Log emits msg at level with key/value args.
func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) { h.log(level, msg, args) }

// Trace emits msg at TRACE (slog level DEBUG-4).
func (h *hcLogger) Trace(msg string, args ...any) { h.log(hclog.Trace, msg, args) }

// Debug emits msg at DEBUG.
func (h *hcLogger) Debug(msg string, args ...any) { h.log(hclog.Debug, msg, args) }

// Info emits msg at INFO.
func (h *hcLogger) Info(msg string, args ...any) { h.log(hclog.Info, msg, args) }

// Warn emits msg at WARN.
func (h *hcLogger) Warn(msg string, args ...any) { h.log(hclog.Warn, msg, args) }

// Error emits msg at ERROR.
func (h *hcLogger) Error(msg string, args ...any) { h.log(hclog.Error, msg, args) }

// log must be called directly by the exported method the library called,
// so that the caller's frame is at a fixed depth.
func (h *hcLogger) log(level hclog.Level, msg string, args []any) {
	if !h.enabled(level) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // runtime.Callers, log, Info (etc.)
	h.emit(level, msg, args, pcs[0])
}

func (h *hcLogger) emit(level hclog.Level, msg string, args []any, pc uintptr) {
	r := slog.NewRecord(time.Now(), toSlogLevel(level), msg, pc)
	r.AddAttrs(hcArgsToAttrs(args)...)
	_ = h.sl.Handler().Handle(context.Background(), r)
}

func (h *hcLogger) enabled(level hclog.Level) bool {
	cur := hclog.Level(h.level.Load())
	if level == hclog.Off || cur == hclog.Off || level < cur {
		return false
	}
	return h.sl.Handler().Enabled(context.Background(), toSlogLevel(level))
}

// IsTrace reports whether TRACE records would be emitted.
func (h *hcLogger) IsTrace() bool { return h.enabled(hclog.Trace) }

// IsDebug reports whether DEBUG records would be emitted.
func (h *hcLogger) IsDebug() bool { return h.enabled(hclog.Debug) }

// IsInfo reports whether INFO records would be emitted.
func (h *hcLogger) IsInfo() bool { return h.enabled(hclog.Info) }

// IsWarn reports whether WARN records would be emitted.
func (h *hcLogger) IsWarn() bool { return h.enabled(hclog.Warn) }

// IsError reports whether ERROR records would be emitted.
func (h *hcLogger) IsError() bool { return h.enabled(hclog.Error) }

// ImpliedArgs returns the key/value pairs added by With.
func (h *hcLogger) ImpliedArgs() []any {
	return append([]any(nil), h.implied...)
}

// With returns a logger that adds args to every record. As in hclog, a key
// given again replaces the earlier value.
func (h *hcLogger) With(args ...any) hclog.Logger {
	if len(args) == 0 {
		return h
	}
	args = normalizeHCArgs(args)
	implied := append([]any(nil), h.implied...)
	for i := 0; i+1 < len(args); i += 2 {
		k := args[i]
		replaced := false
		for j := 0; j+1 < len(implied); j += 2 {
			if implied[j] == k {
				implied[j+1] = args[i+1]
				replaced = true
				break
			}
		}
		if !replaced {
			implied = append(implied, k, args[i+1])
		}
	}
	c := h.clone()
	c.implied = implied
	c.sl = c.derive()
	return c
}

// Name returns the logger's dotted name.
func (h *hcLogger) Name() string { return h.name }

// Named returns a logger whose name is this one's with "."+name appended.
func (h *hcLogger) Named(name string) hclog.Logger {
	if h.name != "" && name != "" {
		name = h.name + "." + name
	} else if name == "" {
		name = h.name
	}
	return h.ResetNamed(name)
}

// ResetNamed returns a logger named name, whatever this one's name is.
func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := h.clone()
	c.name = name
	c.sl = c.derive()
	return c
}

// SetLevel changes the level of this logger and every logger related to
// it. hclog.NoLevel means hclog.Info.
func (h *hcLogger) SetLevel(level hclog.Level) {
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	h.level.Store(int32(level))
}

// GetLevel returns the current level.
func (h *hcLogger) GetLevel() hclog.Level { return hclog.Level(h.level.Load()) }

// StandardLogger returns a *log.Logger writing through this logger.
func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter returns an io.Writer for log.SetOutput. Each Write is one
// record; with opts.InferLevels a leading "[DEBUG]", "[ERR]" etc. sets the
// level, and opts.ForceLevel overrides it.
func (h *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &stdLogWriter{hc: h}
	if opts != nil {
		w.infer = opts.InferLevels
		w.inferTimestamp = opts.InferLevelsWithTimestamp
		w.force = opts.ForceLevel
	}
	return w
}

// NewStdLogger returns a *log.Logger for libraries that take one, such as
// memberlist's Config.Logger. It reads the "[DEBUG]", "[INFO]", "[WARN]",
// "[ERR]" prefix of each line as the slog level (no prefix: INFO), and
// drops a redundant "name: " from the start of the message. All levels
// are passed on: l's handler decides what is kept.
func NewStdLogger(l *slog.Logger, name string) *log.Logger {
	h := NewHCLogger(l, name, hclog.Trace).(*hcLogger)
	return log.New(&stdLogWriter{hc: h, infer: true, stripName: true}, "", 0)
}

// stdLogWriter turns the lines a *log.Logger writes into slog records.
type stdLogWriter struct {
	hc             *hcLogger
	infer          bool
	inferTimestamp bool
	force          hclog.Level
	stripName      bool
}

func (w *stdLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\r\n")
	level := hclog.Info
	if w.infer || w.force != hclog.NoLevel {
		var ok bool
		var l hclog.Level
		if l, msg, ok = splitLevelPrefix(msg, w.inferTimestamp); ok && w.infer {
			level = l
		}
	}
	if w.force != hclog.NoLevel {
		level = w.force
	}
	if w.stripName && w.hc.name != "" {
		if rest, ok := strings.CutPrefix(msg, w.hc.name+": "); ok {
			msg = rest
		}
	}
	if w.hc.enabled(level) {
		w.hc.emit(level, msg, nil, stdLogCallerPC())
	}
	return len(p), nil
}

// splitLevelPrefix recognises a leading "[LEVEL] " (optionally after a
// timestamp when withTimestamp) and returns the level and the rest.
func splitLevelPrefix(s string, withTimestamp bool) (hclog.Level, string, bool) {
	start := 0
	if withTimestamp {
		i := strings.IndexByte(s, '[')
		if i < 0 || !looksLikeTimestamp(s[:i]) {
			return hclog.NoLevel, s, false
		}
		start = i
	}
	if start >= len(s) || s[start] != '[' {
		return hclog.NoLevel, s, false
	}
	end := strings.IndexByte(s[start:], ']')
	if end < 0 || end > 10 {
		return hclog.NoLevel, s, false
	}
	var level hclog.Level
	switch strings.ToUpper(s[start+1 : start+end]) {
	case "TRACE":
		level = hclog.Trace
	case "DEBUG":
		level = hclog.Debug
	case "INFO":
		level = hclog.Info
	case "WARN", "WARNING":
		level = hclog.Warn
	case "ERR", "ERROR":
		level = hclog.Error
	default:
		return hclog.NoLevel, s, false
	}
	return level, strings.TrimLeft(s[start+end+1:], " "), true
}

func looksLikeTimestamp(s string) bool {
	s = strings.TrimSpace(s)
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && !strings.ContainsRune(" /:-.TZ+", rune(c)) {
			return false
		}
	}
	return true
}

// stdLogCallerPC finds the first frame outside this adapter and the
// standard log package: the library code that logged.
func stdLogCallerPC() uintptr {
	var pcs [8]uintptr
	n := runtime.Callers(3, pcs[:]) // runtime.Callers, stdLogCallerPC, Write
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "log.") {
			return f.PC
		}
		if !more {
			return 0
		}
	}
}

func toSlogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slogLevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// normalizeHCArgs makes args an even list with string keys, the way hclog
// treats a trailing value without a key.
func normalizeHCArgs(args []any) []any {
	if len(args)%2 != 0 {
		args = append(args[:len(args)-1:len(args)-1], hclog.MissingKey, args[len(args)-1])
	}
	out := make([]any, len(args))
	for i := 0; i < len(args); i += 2 {
		k, ok := args[i].(string)
		if !ok {
			k = fmt.Sprint(args[i])
		}
		out[i], out[i+1] = k, args[i+1]
	}
	return out
}

func hcArgsToAttrs(args []any) []slog.Attr {
	if len(args) == 0 {
		return nil
	}
	args = normalizeHCArgs(args)
	attrs := make([]slog.Attr, 0, len(args)/2)
	for i := 0; i < len(args); i += 2 {
		k := args[i].(string)
		if k == "error" {
			k = "err"
		}
		attrs = append(attrs, slog.Any(k, hcValue(args[i+1])))
	}
	return attrs
}

// hcValue renders hclog's formatting helper types the way hclog would.
func hcValue(v any) any {
	switch x := v.(type) {
	case hclog.Format:
		if len(x) == 0 {
			return ""
		}
		if f, ok := x[0].(string); ok {
			return fmt.Sprintf(f, x[1:]...)
		}
		return fmt.Sprint(x...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(x))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(x))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(x))
	case hclog.Quote:
		return fmt.Sprintf("%q", string(x))
	default:
		return v
	}
}
