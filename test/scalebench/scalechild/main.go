// Command scalechild is the measured child process of the scale and churn
// benchmarks (test/scalebench): every method (oomwatch's watchdog, the
// peer way built on containerd/cgroups v3, the baseline) runs in this same
// binary, so their numbers differ only by what they arm. It is its own module because
// cgroup1/cgroup2 pull in dependencies (cilium/ebpf, runtime-spec, …) that
// the main module's go.mod does not carry; the benchmark builds it with
// `go build -C test/scalebench/scalechild`.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/test/scalebench"
)

func main() {
	scalebench.PeerFunc = func(sp scalebench.Spec, kids []string, res *scalebench.Result) {
		if sp.Version == 1 {
			peerV1(sp, kids, res)
		} else {
			peerV2(sp, kids, res)
		}
	}
	scalebench.MaybeChild()
	fmt.Fprintln(os.Stderr, "scalechild: run by test/scalebench with", scalebench.ChildEnv, "set")
	os.Exit(2)
}

func fail(res *scalebench.Result, i int, err error) {
	res.ArmErrors++
	if res.FirstErr == "" {
		res.FirstErr = fmt.Sprintf("cgroup #%d: %v", i+1, err)
	}
}

// peerV1: what a Go program does with containerd/cgroups v1: one
// OOMEventFD (a blocking eventfd registered on memory.oom_control) and one
// goroutine blocked in read(2) on it, per cgroup.
func peerV1(sp scalebench.Spec, kids []string, res *scalebench.Result) {
	rel := strings.TrimPrefix(sp.Root, sp.Mount)
	hier := func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{cgroup1.NewMemory(filepath.Dir(sp.Mount))}, nil
	}
	for i, k := range kids {
		cg, err := cgroup1.Load(cgroup1.StaticPath(rel+"/"+k), cgroup1.WithHierarchy(hier))
		var efd uintptr
		if err == nil {
			efd, err = cg.OOMEventFD()
		}
		if err != nil {
			fail(res, i, err)
			continue
		}
		res.Armed++
		go func(fd int) {
			var b [8]byte
			for {
				_, err := unix.Read(fd, b[:])
				if err != nil && err != unix.EINTR {
					return
				}
			}
		}(int(efd))
		if (i+1)%500 == 0 {
			fmt.Printf("%s%d threads=%d\n", "SCALE-PROGRESS ", i+1, scalebench.Threads())
		}
	}
}

// peerV2: containerd's way on cgroup v2: cgroup2.Manager.EventChan() per
// cgroup (its own inotify instance and goroutine) and a goroutine consuming
// its channels, as containerd's pkg/oom/v2 does.
func peerV2(sp scalebench.Spec, kids []string, res *scalebench.Result) {
	rel := strings.TrimPrefix(sp.Root, sp.Mount)
	for i, k := range kids {
		m, err := cgroup2.Load(rel+"/"+k, cgroup2.WithMountpoint(sp.Mount))
		if err != nil {
			fail(res, i, err)
			continue
		}
		ec, errCh := m.EventChan()
		select {
		case err, ok := <-errCh:
			// EventChan reports setup failures (e.g. inotify_init1 EMFILE at
			// fs.inotify.max_user_instances) on errCh before returning.
			if !ok {
				err = errors.New("error channel closed")
			}
			fail(res, i, err)
			continue
		default:
		}
		res.Armed++
		go func() {
			for {
				select {
				case <-ec:
				case _, ok := <-errCh:
					if !ok {
						return
					}
				}
			}
		}()
		if (i+1)%500 == 0 {
			fmt.Printf("%s%d\n", "SCALE-PROGRESS ", i+1)
		}
	}
}
