package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/oomwatch/oomwatch/internal/rootowned"
)

// LoadOptions say how a file is read.
type LoadOptions struct {
	// Explicit marks a path the operator named: a missing file is an
	// error. A missing file at a path that was not named (the default)
	// means the built-in defaults.
	Explicit bool
	// RequireRootOwned refuses a file, or the directory holding it, that
	// is owned by another user than root or writable by group or other:
	// oomwatch runs as root and changes oom_score_adj, memory limits and
	// kills tasks on the file's say-so. Load sets it when running as root.
	RequireRootOwned bool

	// owner is the uid RequireRootOwned demands: root, except in tests,
	// which cannot rely on the uid they run as.
	owner uint32
}

// Load reads the config at path. explicit says the operator named the path
// (a missing file is then an error); otherwise a missing file means the
// built-in defaults. Running as root, a file or directory that others could
// write is refused.
func Load(path string, explicit bool) (*Config, error) {
	return LoadWith(path, LoadOptions{Explicit: explicit, RequireRootOwned: os.Geteuid() == 0})
}

// LoadWith reads the config at path as o says. Errors are *Error.
func LoadWith(path string, o LoadOptions) (*Config, error) {
	fail := func(msg, hint string) (*Config, error) {
		return nil, &Error{Problems: []*Problem{{File: path, Msg: msg, Hint: hint}}}
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !o.Explicit {
		return Defaults(), nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fail("no such file", "fix the path, or create the file: oomwatch config --defaults > "+path)
	}
	if err != nil {
		return fail(fmt.Sprintf("cannot open: %v", unwrapPathError(err)), "check the path and its permissions")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Sprintf("cannot stat: %v", unwrapPathError(err)), "check the file")
	}
	if !st.Mode().IsRegular() {
		return fail("not a regular file", "point oomwatch at a YAML file")
	}
	if o.RequireRootOwned {
		// The opened file is checked, not the name, so it cannot be swapped
		// between the check and the read.
		var re *rootowned.Error
		if err := rootowned.Opened(path, st, o.owner); errors.As(err, &re) {
			return fail(re.Msg, re.Hint)
		}
	}
	if st.Size() > MaxFileSize {
		return fail(fmt.Sprintf("file is %s (%d bytes), more than the %s allowed", sizeStr(st.Size()), st.Size(), sizeStr(MaxFileSize)),
			"a config file is a few KiB: check the path")
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fail(fmt.Sprintf("cannot read: %v", unwrapPathError(err)), "check the file")
	}
	return parse(path, data, builder{checkFiles: o.RequireRootOwned, owner: o.owner})
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Holder holds the config in force and swaps it on reload (SIGHUP). Readers
// call Current for every incident; a reload that fails leaves the old
// config in force.
type Holder struct {
	cur  atomic.Pointer[Config]
	mu   sync.Mutex // one reload at a time
	opts LoadOptions
}

// NewHolder holds initial; reloads read files as opts says.
func NewHolder(initial *Config, opts LoadOptions) *Holder {
	h := &Holder{opts: opts}
	h.cur.Store(initial)
	return h
}

// Current returns the config in force.
func (h *Holder) Current() *Config { return h.cur.Load() }

// Reload reads path and puts it in force. On error the config in force
// stays, and the error says why the new one was refused.
func (h *Holder) Reload(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, err := LoadWith(path, h.opts)
	if err != nil {
		return err
	}
	h.cur.Store(c)
	return nil
}

// Set puts an already loaded and checked config in force (a reload whose
// caller validated more than this package can, e.g. the alerts section).
func (h *Holder) Set(c *Config) error {
	if c == nil {
		return errors.New("config: nil config")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur.Store(c)
	return nil
}

// notText says why data is not a text file ("" when it is): a NUL byte or
// bytes that are not UTF-8, found before the YAML parser reports them as
// syntax somewhere in the middle.
func notText(data []byte) string {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return fmt.Sprintf("binary file, not YAML text (a NUL byte at offset %d)", i)
	}
	if !utf8.Valid(data) {
		for i := 0; i < len(data); {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n <= 1 {
				return fmt.Sprintf("not UTF-8 text, not a YAML file (an invalid byte 0x%02x at offset %d)", data[i], i)
			}
			i += n
		}
	}
	return ""
}

// sizeStr is a file size for a message: 11.0 MiB, 1 MiB, 300 bytes.
func sizeStr(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
