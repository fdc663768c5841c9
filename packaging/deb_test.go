package packaging

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/oomwatch/oomwatch/test/fixture"
	"github.com/oomwatch/oomwatch/test/testtier"
)

// buildDeb runs build-deb.sh and returns the .deb's path and the script's
// stderr. bin, if set, is shipped instead of building the binary.
func buildDeb(t testing.TB, version, outDir, packager, bin string) (string, string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "build-deb.sh")
	cmd := exec.Command("bash", script, version, outDir)
	cmd.Env = append(os.Environ(), "GO="+fixture.GoTool(), "PACKAGER="+packager, "OOMWATCH_BIN="+bin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build-deb.sh %s: %v\n%s", version, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], stderr.String()
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "oomwatch")
	cmd := exec.Command(fixture.GoTool(), "build", "-trimpath", "-ldflags", "-s -w -X main.version=0.1.0-test",
		"-o", bin, "github.com/oomwatch/oomwatch/cmd/oomwatch")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// The package, built with each packager, is checked as dpkg and lintian
// see it.
func TestDebOfEachPackagerPassesDpkgAndLintian(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the daemon and the package")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not found: not a Debian host")
	}
	bin := buildBinary(t)
	for _, packager := range []string{"nfpm", "dpkg-deb"} {
		t.Run(packager, func(t *testing.T) {
			out := t.TempDir()
			deb, log := buildDeb(t, "v0.1.0", out, packager, bin)
			if packager == "nfpm" && strings.Contains(log, "falling back to dpkg-deb") {
				testtier.Require(t, testtier.VM, "nfpm v2.45.2 could not be fetched or built (go run needs the module proxy once):\n"+log)
			}
			if filepath.Base(deb) != "oomwatch_0.1.0-1_amd64.deb" {
				t.Fatalf("package %s, want oomwatch_0.1.0-1_amd64.deb", deb)
			}
			checkDeb(t, deb)
			lintian(t, deb)
		})
	}
}

func checkDeb(t *testing.T, deb string) {
	info := dpkgDeb(t, "-I", deb)
	for _, want := range []string{"Package: oomwatch", "Version: 0.1.0-1", "Architecture: amd64",
		"Depends: init-system-helpers (>= 1.54~)", "Section: admin", "postinst", "prerm", "postrm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	if got := strings.TrimSpace(dpkgDeb(t, "-f", deb, "Maintainer")); got == "" {
		t.Error("no Maintainer")
	}
	list := dpkgDeb(t, "-c", deb)
	for _, want := range []string{
		`^-rwxr-xr-x root/root .* \./usr/bin/oomwatch$`,
		"-rw-r--r-- root/root .* ./lib/systemd/system/oomwatch.service$",
		"-rw-r----- root/root .* ./etc/oomwatch/oomwatch.yaml$",
		"-rw-r--r-- root/root .* ./usr/share/man/man8/oomwatch.8.gz$",
		"-rw-r--r-- root/root .* ./usr/share/doc/oomwatch/copyright$",
		"-rw-r--r-- root/root .* ./usr/share/doc/oomwatch/changelog.Debian.gz$",
		"-rw-r--r-- root/root .* ./usr/share/bash-completion/completions/oomwatch$",
		"-rw-r--r-- root/root .* ./usr/share/zsh/vendor-completions/_oomwatch$",
		"-rw-r--r-- root/root .* ./usr/share/fish/vendor_completions.d/oomwatch.fish$",
		"-rw-r--r-- root/root .* ./usr/share/oomwatch/monitoring/oomwatch.rules.yml$",
		"-rw-r--r-- root/root .* ./usr/share/oomwatch/monitoring/oomwatch-dashboard.json$",
	} {
		if !matchLine(list, want) {
			t.Errorf("no file matching %q in\n%s", want, list)
		}
	}
	dir := t.TempDir()
	dpkgDeb(t, "-x", deb, dir)
	dpkgDeb(t, "-e", deb, filepath.Join(dir, "DEBIAN"))
	if c, _ := os.ReadFile(filepath.Join(dir, "DEBIAN/conffiles")); strings.TrimSpace(string(c)) != "/etc/oomwatch/oomwatch.yaml" {
		t.Errorf("conffiles %q", c)
	}
	for script, want := range map[string]string{
		"postinst": "deb-systemd-invoke $_dh_action 'oomwatch.service'",
		"prerm":    "deb-systemd-invoke stop 'oomwatch.service'",
		"postrm":   "deb-systemd-helper purge 'oomwatch.service'",
	} {
		c, err := os.ReadFile(filepath.Join(dir, "DEBIAN", script))
		if err != nil || !strings.Contains(string(c), want) {
			t.Errorf("%s lacks %q (%v)", script, want, err)
		}
	}
	f, err := elf.Open(filepath.Join(dir, "usr/bin/oomwatch"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("usr/bin/oomwatch is dynamically linked")
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dir, "lib/systemd/system/oomwatch.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/oomwatch run") {
		t.Errorf("unit ExecStart does not run /usr/bin/oomwatch:\n%s", unit)
	}
	cfg, _ := os.ReadFile(filepath.Join(dir, "etc/oomwatch/oomwatch.yaml"))
	if len(cfg) == 0 {
		t.Error("empty default config")
	}
	checkCompletions(t, dir)
	for file, want := range map[string][]byte{"oomwatch.rules.yml": Rules, "oomwatch-dashboard.json": Dashboard} {
		if got, err := os.ReadFile(filepath.Join(dir, "usr/share/oomwatch/monitoring", file)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("usr/share/oomwatch/monitoring/%s is not packaging/monitoring/%s (%v)", file, file, err)
		}
	}
	cp, _ := os.ReadFile(filepath.Join(dir, "usr/share/doc/oomwatch/copyright"))
	if !strings.HasPrefix(string(cp), "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/") ||
		!strings.Contains(string(cp), "License: Apache-2.0") || strings.Contains(string(cp), "@GO_MODULES@") {
		t.Errorf("copyright:\n%s", cp)
	}
}

func matchLine(text, pattern string) bool {
	return regexp.MustCompile("(?m)" + pattern).MatchString(text)
}

// checkCompletions checks the completion scripts of the package unpacked in
// dir: each is the one its binary generates for that shell, and the bash
// one, loaded by bash-completion as an interactive shell would, completes
// the commands and flags of that binary.
func checkCompletions(t *testing.T, dir string) {
	t.Helper()
	bin := filepath.Join(dir, "usr/bin/oomwatch")
	for shell, file := range map[string]string{
		"bash": "usr/share/bash-completion/completions/oomwatch",
		"zsh":  "usr/share/zsh/vendor-completions/_oomwatch",
		"fish": "usr/share/fish/vendor_completions.d/oomwatch.fish",
	} {
		got, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Errorf("%s completion: %v", shell, err)
			continue
		}
		want, err := exec.Command(bin, "completion", shell).Output()
		if err != nil || len(want) == 0 || !bytes.Equal(got, want) {
			t.Errorf("%s is not what `oomwatch completion %s` prints (%v)", file, shell, err)
		}
	}
	const lib = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(lib); err != nil {
		testtier.Require(t, testtier.VM, "bash-completion not installed (apt-get install bash-completion, or make sdvm-deps)")
		return
	}
	// complete WORDS...: what <TAB> after the last word offers
	complete := func(words ...string) []string {
		t.Helper()
		line := strings.Join(words, " ")
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		script := "source " + lib + ` && source "$COMP_FILE" && COMP_WORDS=(` + strings.Join(quoted, " ") + ") && COMP_CWORD=" +
			strconv.Itoa(len(words)-1) + ` && COMP_LINE="$LINE" && COMP_POINT=${#COMP_LINE} && ` +
			`__start_oomwatch oomwatch "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}" && printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command("bash", "--norc", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "LINE="+line,
			"COMP_FILE="+filepath.Join(dir, "usr/share/bash-completion/completions/oomwatch"))
		// stderr: compopt complains outside a real completion (harmless)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s%s", line, err, out, stderr.String())
		}
		return strings.Fields(string(out))
	}
	if got := complete("oomwatch", "st"); !slices.Contains(got, "status") {
		t.Errorf("oomwatch st<TAB> offers %q, want status", got)
	}
	if got := complete("oomwatch", "run", "--conf"); !slices.Contains(got, "--config") {
		t.Errorf("oomwatch run --conf<TAB> offers %q, want --config", got)
	}
	if got := complete("oomwatch", ""); !slices.Contains(got, "check-config") || !slices.Contains(got, "scan") {
		t.Errorf("oomwatch <TAB> offers %q, want every command", got)
	}
}

// lintian fails the test on any error or warning; infos are logged.
func lintian(t *testing.T, deb string) {
	t.Helper()
	if _, err := exec.LookPath("lintian"); err != nil {
		testtier.Require(t, testtier.VM, "lintian not found (apt-get install lintian, or make sdvm-deps)")
	}
	out, err := exec.Command("lintian", "--pedantic", "--display-info", "--tag-display-limit", "0", "--fail-on", "error", deb).CombinedOutput()
	t.Logf("lintian --pedantic %s:\n%s", filepath.Base(deb), out)
	if err != nil {
		t.Fatalf("lintian: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}
}
