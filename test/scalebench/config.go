package scalebench

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Knobs, shared by the host benchmarks and the VM guest scenarios.
//
//	OOMWATCH_SCALE_SIZES=1000,5000,10000   cgroup counts
//	OOMWATCH_SCALE_IDLE=60s                idle period measured per child
//	OOMWATCH_SCALE_PROFILE=dir             cpu (arming/churn) and heap (armed) profiles of each child
//	OOMWATCH_CHURN_SECS=30s, OOMWATCH_CHURN_RATE=1000, OOMWATCH_CHURN_LIFETIME=1s
type Knobs struct {
	Sizes     []int
	Idle      time.Duration
	Profile   string
	ChurnDur  time.Duration
	ChurnRate int
	ChurnLife time.Duration
	Settle    time.Duration // after arming, before the idle period (default 2s)
}

// FromEnv reads the knobs.
func FromEnv() (Knobs, error) {
	k := Knobs{Sizes: []int{1000, 5000, 10000}, Idle: 60 * time.Second, ChurnDur: 30 * time.Second, ChurnRate: 1000, ChurnLife: time.Second,
		Profile: os.Getenv("OOMWATCH_SCALE_PROFILE")}
	if s := os.Getenv("OOMWATCH_SCALE_SIZES"); s != "" {
		k.Sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return k, fmt.Errorf("OOMWATCH_SCALE_SIZES=%q", s)
			}
			k.Sizes = append(k.Sizes, n)
		}
	}
	for _, d := range []struct {
		env string
		p   *time.Duration
	}{{"OOMWATCH_SCALE_IDLE", &k.Idle}, {"OOMWATCH_CHURN_SECS", &k.ChurnDur}, {"OOMWATCH_CHURN_LIFETIME", &k.ChurnLife}, {"OOMWATCH_SCALE_SETTLE", &k.Settle}} {
		if s := os.Getenv(d.env); s != "" {
			v, err := time.ParseDuration(s)
			if err != nil {
				return k, fmt.Errorf("%s=%q: %v", d.env, s, err)
			}
			*d.p = v
		}
	}
	if s := os.Getenv("OOMWATCH_CHURN_RATE"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return k, fmt.Errorf("OOMWATCH_CHURN_RATE=%q", s)
		}
		k.ChurnRate = v
	}
	return k, nil
}

// Kernel is the running kernel's release.
func Kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// ReadSysctl reads /proc/sys/<name with / for .>.
func ReadSysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// WriteSysctl writes it.
func WriteSysctl(name, v string) error {
	return os.WriteFile("/proc/sys/"+strings.ReplaceAll(name, ".", "/"), []byte(v), 0)
}

// Sequence runs the scale measurement on one hierarchy: for each size, grow
// the tree, then one child per method. label names the hierarchy in the
// table. before, if set, runs before each peer child (e.g. raising a sysctl)
// and returns a note.
func Sequence(exe string, args []string, tree *Tree, k Knobs, label string, methods []string, logf func(string, ...any)) []Result {
	var out []Result
	for _, n := range k.Sizes {
		t0 := time.Now()
		if err := tree.Grow(n); err != nil {
			out = append(out, Result{Hierarchy: label, Cgroups: n, Method: "-", Crash: "create cgroups: " + err.Error()})
			return out
		}
		logf("%s: %d cgroups present (created in %v)", label, n, time.Since(t0).Round(time.Millisecond))
		for _, m := range methods {
			sp := Spec{Method: m, Version: tree.Version, Root: tree.Dir, Mount: tree.Mount, Idle: k.Idle, Settle: k.Settle, Profile: k.Profile}
			r := RunChild(exe, args, sp, k.Idle+10*time.Minute)
			r.Hierarchy, r.Cgroups = label, n
			logf("%s", strings.TrimRight(ScaleTable([]Result{r}), "\n"))
			out = append(out, r)
		}
	}
	return out
}

// BuildChild builds the scalechild binary (its own module, next to this
// package: srcDir is test/scalebench/scalechild) into out, static.
func BuildChild(srcDir, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", srcDir, err, b)
	}
	return nil
}

// ShippedKnobs are BenchmarkShippedV1Host's.
//
//	OOMWATCH_SHIPPED_SIZES=100,1000,10000  cgroup counts
//	OOMWATCH_SHIPPED_SETTLE=5s             after ready, before measuring
//	OOMWATCH_SHIPPED_IDLE=20s              the idle period wake-ups are counted over
//	OOMWATCH_SHIPPED_EXE=path              measure this binary instead of building one
//	OOMWATCH_SHIPPED_ARGS="--flag …"       more flags for run (to see what a service costs)
type ShippedKnobs struct {
	Sizes        []int
	Settle, Idle time.Duration
	Exe          string
	Args         []string
}

// ShippedFromEnv reads them.
func ShippedFromEnv() (ShippedKnobs, error) {
	k := ShippedKnobs{Sizes: []int{100, 1000, 10000}, Settle: 5 * time.Second, Idle: 20 * time.Second,
		Exe: os.Getenv("OOMWATCH_SHIPPED_EXE"), Args: strings.Fields(os.Getenv("OOMWATCH_SHIPPED_ARGS"))}
	if s := os.Getenv("OOMWATCH_SHIPPED_SIZES"); s != "" {
		k.Sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return k, fmt.Errorf("OOMWATCH_SHIPPED_SIZES=%q", s)
			}
			k.Sizes = append(k.Sizes, n)
		}
	}
	for _, d := range []struct {
		env string
		p   *time.Duration
	}{{"OOMWATCH_SHIPPED_SETTLE", &k.Settle}, {"OOMWATCH_SHIPPED_IDLE", &k.Idle}} {
		if s := os.Getenv(d.env); s != "" {
			v, err := time.ParseDuration(s)
			if err != nil {
				return k, fmt.Errorf("%s=%q: %v", d.env, s, err)
			}
			*d.p = v
		}
	}
	return k, nil
}
