package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/oomwatch/oomwatch/test/fixture"
)

var (
	daemonOnce sync.Once
	daemonBin  string
	daemonErr  error
	daemonOut  []byte
)

// buildDaemon builds cmd/oomwatch once per test run, static like the
// package ships it.
func buildDaemon(t *testing.T) string {
	t.Helper()
	daemonOnce.Do(func() {
		dir, err := os.MkdirTemp("", "oomwatch-systemd-test-")
		if err != nil {
			daemonErr = err
			return
		}
		daemonBin = filepath.Join(dir, "oomwatch")
		cmd := exec.Command(fixture.GoTool(), "build", "-o", daemonBin, "github.com/oomwatch/oomwatch/cmd/oomwatch")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		daemonOut, daemonErr = cmd.CombinedOutput()
	})
	if daemonErr != nil {
		t.Fatalf("go build ./cmd/oomwatch: %v\n%s", daemonErr, daemonOut)
	}
	return daemonBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if daemonBin != "" {
		os.RemoveAll(filepath.Dir(daemonBin))
	}
	os.Exit(code)
}
