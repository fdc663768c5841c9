// Package rootowned decides whether oomwatch, which runs as root, may take
// orders from a file: its config, the hooks it runs, the CA bundles and
// secrets it reads. The file, the directory holding it and, for a symlink,
// the directory holding its target must be owned by root and writable by no
// one else; whoever else could write any of them could change what oomwatch
// reads or runs.
package rootowned

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Root is the owner every file must have.
const Root = 0

// Error says why a file is not to be trusted and what fixes it.
type Error struct {
	Path string // the file checked
	Msg  string // what is wrong, naming the file or the directory at fault
	Hint string // the command that fixes it
}

func (e *Error) Error() string { return e.Path + ": " + e.Msg + " — " + e.Hint }

// Opened checks the file named path whose stat is st, then the directories
// holding it. Pass the stat of the opened file, so that the file checked is
// the one read. Errors are *Error.
func Opened(path string, st fs.FileInfo, owner uint32) error {
	if msg, hint := unsafeOwner(path, st, owner, false); msg != "" {
		return &Error{Path: path, Msg: msg, Hint: hint}
	}
	if msg, hint := checkDirs(path, owner); msg != "" {
		return &Error{Path: path, Msg: msg, Hint: hint}
	}
	return nil
}

// Path checks the file at path (for a symlink, its target) and the
// directories holding it. Errors are *Error.
func Path(path string, owner uint32) error {
	st, err := os.Stat(path)
	if err != nil {
		return &Error{Path: path, Msg: fmt.Sprintf("cannot check the file: %v", unwrapPathError(err)), Hint: "check the path"}
	}
	return Opened(path, st, owner)
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

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
