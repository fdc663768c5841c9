package sdvm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// GoTool is the go command: the one on PATH, else /usr/local/go/bin/go.
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// GoBuild builds a static binary of pkg as dir/name and returns its path.
func GoBuild(dir, name, pkg, ldflags string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.Command(GoTool(), "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// BuildDeb runs packaging/build-deb.sh (top is the repository) to package
// bin as version into dir and returns the .deb's path.
func BuildDeb(top, bin, version, dir string) (string, error) {
	cmd := exec.Command("bash", filepath.Join(top, "packaging", "build-deb.sh"), version, dir)
	cmd.Env = append(os.Environ(), "GO="+GoTool(), "OOMWATCH_BIN="+bin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build-deb.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], nil
}
