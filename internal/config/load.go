package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
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
		if msg, hint := unsafeOwner(path, st, o.owner, false); msg != "" {
			return fail(msg, hint)
		}
		if msg, hint := checkDirs(path, o.owner); msg != "" {
			return fail(msg, hint)
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fail(fmt.Sprintf("cannot read: %v", unwrapPathError(err)), "check the file")
	}
	return Parse(path, data)
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkDirs checks the directory holding path and, when path is a symlink,
// the one holding its target: whoever can write either can replace the file.
func checkDirs(path string, owner uint32) (string, string) {
	dirs := []string{filepath.Dir(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Sprintf("cannot check the directory %s: %v", d, unwrapPathError(err)), "check the path"
		}
		if msg, hint := unsafeOwner(d, st, owner, true); msg != "" {
			return msg, hint
		}
	}
	return "", ""
}

// unsafeOwner says what is wrong when st (of name) is not owned by owner or
// is writable by group or other.
func unsafeOwner(name string, st fs.FileInfo, owner uint32, dir bool) (string, string) {
	what := "the file"
	if dir {
		what = "its directory " + name
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("cannot check the owner of %s", what), "check the file"
	}
	if sys.Uid != owner {
		return fmt.Sprintf("%s is owned by uid %d, not root: oomwatch runs as root and must not take orders from another user", what, sys.Uid),
			"run chown root:root " + name
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("%s is writable by group or other (mode %04o): oomwatch runs as root and must not take orders from other users", what, st.Mode().Perm()),
			"run chmod go-w " + name
	}
	return "", ""
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
