package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func debVersion(t *testing.T, gitDir, version string) string {
	t.Helper()
	out, err := exec.Command("bash", "deb-version.sh", version, gitDir).CombinedOutput()
	if err != nil {
		t.Fatalf("deb-version.sh %s: %v\n%s", version, err, out)
	}
	return strings.TrimSpace(string(out))
}

// newer fails t unless dpkg sorts b strictly after a.
func newer(t *testing.T, a, b, what string) {
	t.Helper()
	if err := exec.Command("dpkg", "--compare-versions", b, "gt", a).Run(); err != nil {
		t.Errorf("%s: %s does not sort after %s: an upgrade would be a downgrade", what, b, a)
	}
}

func needDpkg(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not found: not a Debian host")
	}
}

// TestDebVersionFormats pins the mapping from git describe to Debian.
func TestDebVersionFormats(t *testing.T) {
	needDpkg(t)
	for in, want := range map[string]string{
		"v1.2.3":     "1.2.3-1",
		"1.2.3":      "1.2.3-1",
		"v1.3.0-rc1": "1.3.0~rc1-1",
		"1.2.3-2":    "1.2.3-2",
		"dev":        "0.0~dev-1",
		"0.0~sdvm":   "0.0~sdvm-1",
	} {
		if got := debVersion(t, t.TempDir(), in); got != want {
			t.Errorf("deb-version.sh %s = %s, want %s", in, got, want)
		}
	}
	// a hash that is not in the repository cannot be dated: an error, not 0.0~gitHASH
	if out, err := exec.Command("bash", "deb-version.sh", "abcdef1", t.TempDir()).CombinedOutput(); err == nil {
		t.Errorf("deb-version.sh of an unknown commit succeeded: %s", out)
	}
}

// TestDebVersionsRiseWithCommits builds a repository whose commits share
// seconds and whose hashes sort at random, tags releases and pre-releases,
// and checks that the package version of every commit, as the Makefile
// names it (git describe --tags --always [--dirty]), sorts after the one
// before it.
func TestDebVersionsRiseWithCommits(t *testing.T) {
	needDpkg(t)
	dir := t.TempDir()
	git := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), append([]string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"}, env...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git(nil, "init", "-q", "-b", "main")
	// second of each commit: 0, 0, 0, 1, 1, 60, ... (several per second)
	secs := []int{0, 0, 0, 1, 1, 60, 60, 61, 3600, 3600, 3600, 86400}
	tags := map[int]string{4: "v0.1.0", 7: "v0.2.0-rc1", 9: "v0.2.0"}
	prev := ""
	for i, s := range secs {
		date := "GIT_COMMITTER_DATE=" + strconv.Itoa(1790000000+s) + " +0000"
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		git(nil, "add", "f")
		git([]string{date, "GIT_AUTHOR_DATE=" + strconv.Itoa(1790000000+s) + " +0000"}, "commit", "-q", "-m", "c"+strconv.Itoa(i))
		if tag, ok := tags[i]; ok {
			git(nil, "tag", tag)
		}
		desc := git(nil, "describe", "--tags", "--always")
		v := debVersion(t, dir, desc)
		t.Logf("commit %2d  %-24s %s", i, desc, v)
		if prev != "" {
			newer(t, prev, v, "commit "+strconv.Itoa(i)+" ("+desc+")")
		}
		prev = v
	}
	// uncommitted changes on top of the last commit: after it
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("dirty"), 0o644); err != nil {
		t.Fatal(err)
	}
	desc := git(nil, "describe", "--tags", "--always", "--dirty")
	newer(t, prev, debVersion(t, dir, desc), "a dirty tree ("+desc+")")
	// 1790086400 is 2026-09-22 14:13:20 UTC; 12 commits
	if h := git(nil, "rev-parse", "--short", "HEAD"); prev != "0.2.0+git20260922141320.12."+h+"-1" {
		t.Errorf("last version %s: want 0.2.0+git20260922141320.12.%s-1", prev, h)
	}
}

// TestDebVersionsRiseOverHistory checks the versions of this repository's
// own last 40 commits (first parent: what main went through).
func TestDebVersionsRiseOverHistory(t *testing.T) {
	needDpkg(t)
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", top, "rev-list", "--first-parent", "--abbrev-commit", "-n", "40", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	hashes := strings.Fields(string(out))
	if len(hashes) < 2 {
		t.Skipf("%d commits in this checkout (shallow clone)", len(hashes))
	}
	prev := ""
	for i := len(hashes) - 1; i >= 0; i-- {
		desc, err := exec.Command("git", "-C", top, "describe", "--tags", "--always", hashes[i]).Output()
		if err != nil {
			t.Fatal(err)
		}
		v := debVersion(t, top, strings.TrimSpace(string(desc)))
		if prev != "" {
			newer(t, prev, v, "commit "+hashes[i])
		}
		prev = v
	}
	t.Logf("%d commits, newest %s", len(hashes), prev)
}
