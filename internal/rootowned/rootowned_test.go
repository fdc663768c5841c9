package rootowned

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPathRefusesForeignOwnersMissingFilesAndOpenLinkTargets(t *testing.T) {
	me := uint32(os.Getuid())
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "hook")
	if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Path(f, me); err != nil {
		t.Fatalf("safe file: %v", err)
	}
	var re *Error
	if err := Path(f, me+1); !errors.As(err, &re) || re.Path != f || !strings.Contains(re.Msg, "the file is owned by uid") || re.Hint != "run chown root:root "+f {
		t.Errorf("foreign owner: %#v", err)
	}
	if err := Path(filepath.Join(dir, "missing"), me); !errors.As(err, &re) || !strings.Contains(err.Error(), "cannot check the file: no such file or directory") {
		t.Errorf("missing file: %v", err)
	}
	// A link from a safe directory into an open one is judged by both.
	open := t.TempDir()
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(open, "real")
	if err := os.WriteFile(target, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := Path(link, me); err == nil || err.Error() != link+": its directory "+open+" is writable by group or other (mode 0777): oomwatch runs as root and must not take orders from other users — run chmod go-w "+open {
		t.Errorf("link into an open directory: %v", err)
	}
}
