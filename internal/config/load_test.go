package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// me is what "root" means in these tests: the uid running them.
func me() LoadOptions {
	return LoadOptions{Explicit: true, RequireRootOwned: true, owner: uint32(os.Getuid())}
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return p
}

func TestLoadMissing(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "oomwatch.yaml")
	c, err := LoadWith(missing, LoadOptions{})
	if err != nil {
		t.Fatalf("missing file at the default path: %v", err)
	}
	if c.Path != "" || len(c.RuleNames()) != 0 {
		t.Errorf("defaults expected, got %+v", c)
	}
	_, err = LoadWith(missing, LoadOptions{Explicit: true})
	if want := missing + ": no such file — fix the path, or create the file: oomwatch config --defaults > " + missing; err == nil || err.Error() != want {
		t.Errorf("explicit missing file: %v\nwant %s", err, want)
	}
	if _, err := Load(missing, true); err == nil {
		t.Error("Load of a missing explicit file succeeded")
	}
	if _, err := LoadWith(dir, LoadOptions{Explicit: true}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

func TestLoadGoodAndBad(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "rules:\n  - name: a\n    dry_run: true\n")
	c, err := LoadWith(good, me())
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != good || c.For("/x").Rule != "a" {
		t.Errorf("config %+v", c)
	}
	bad := writeFile(t, dir, "bad.yaml", "ladder: [reboot]\n")
	_, err = LoadWith(bad, me())
	if want := bad + `:1:10: ladder[0]: unknown ladder rung "reboot" — use reset-adj, raise-limit, freeze, kill`; err == nil || err.Error() != want {
		t.Errorf("err %v\nwant %s", err, want)
	}
	// The real size, not where the reader stopped.
	big := writeFile(t, dir, "big.yaml", strings.Repeat("#", 11<<20))
	if _, err := LoadWith(big, me()); err == nil || !strings.Contains(err.Error(), "file is 11 MiB (11534336 bytes), more than the 1 MiB allowed") {
		t.Errorf("big file: %v", err)
	}
}

func TestLoadRefusesFilesOthersControl(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, dir, "oomwatch.yaml", "dry_run: true\n")
	if _, err := LoadWith(p, me()); err != nil {
		t.Fatalf("safe file refused: %v", err)
	}

	if err := os.Chmod(p, 0o664); err != nil {
		t.Fatal(err)
	}
	_, err := LoadWith(p, me())
	if want := p + ": the file is writable by group or other (mode 0664): oomwatch runs as root and must not take orders from other users — run chmod go-w " + p; err == nil || err.Error() != want {
		t.Errorf("group-writable file: %v\nwant %s", err, want)
	}
	// Without the requirement (not running as root) it loads.
	if _, err := LoadWith(p, LoadOptions{Explicit: true}); err != nil {
		t.Errorf("not as root: %v", err)
	}
	os.Chmod(p, 0o644)

	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err = LoadWith(p, me())
	if want := p + ": its directory " + dir + " is writable by group or other (mode 0777): oomwatch runs as root and must not take orders from other users — run chmod go-w " + dir; err == nil || err.Error() != want {
		t.Errorf("world-writable directory: %v\nwant %s", err, want)
	}
	os.Chmod(dir, 0o755)

	other := me()
	other.owner = uint32(os.Getuid()) + 1
	_, err = LoadWith(p, other)
	if want := p + ": the file is owned by uid " + strconv.Itoa(os.Getuid()) + ", not root: oomwatch runs as root and must not take orders from another user — run chown root:root " + p; err == nil || err.Error() != want {
		t.Errorf("foreign owner: %v\nwant %s", err, want)
	}

	// A symlink is judged by the directory of its target too.
	open := t.TempDir()
	os.Chmod(open, 0o777)
	target := writeFile(t, open, "real.yaml", "dry_run: true\n")
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWith(link, me()); err == nil || !strings.Contains(err.Error(), "its directory "+open+" is writable") {
		t.Errorf("symlink into a world-writable directory: %v", err)
	}
}

func TestHolderReload(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "oomwatch.yaml", "rules:\n  - name: old\n    dry_run: true\n")
	c, err := LoadWith(p, me())
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(c, me())
	if h.Current() != c {
		t.Fatal("Current is not the initial config")
	}

	writeFile(t, dir, "oomwatch.yaml", "rules:\n  - name: new\n    ladder: [reboot]\n")
	err = h.Reload(p)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), `unknown ladder rung "reboot"`) {
		t.Errorf("bad reload: %v", err)
	}
	if got := h.Current().RuleNames(); len(got) != 1 || got[0] != "old" {
		t.Errorf("after a bad reload the rules are %v: want the old ones", got)
	}
	os.Remove(p)
	if err := h.Reload(p); err == nil || h.Current() != c {
		t.Errorf("reload of a vanished explicit file: %v; config kept: %v", err, h.Current() == c)
	}

	writeFile(t, dir, "oomwatch.yaml", "rules:\n  - name: new\n    ladder: [kill]\n")
	if err := h.Reload(p); err != nil {
		t.Fatal(err)
	}
	if got := h.Current().RuleNames(); len(got) != 1 || got[0] != "new" {
		t.Errorf("after a good reload the rules are %v", got)
	}

	// Readers and reloads race freely.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				_ = h.Current().For("/x")
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				_ = h.Reload(p)
			}
		}()
	}
	wg.Wait()
}
