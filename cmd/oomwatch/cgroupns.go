package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/oomwatch/oomwatch/internal/procfs"
)

// joinedEnv marks the process image oomwatch re-executed after joining the
// host's cgroup namespace; its value is "OWN:HOST", the two inodes.
const joinedEnv = "OOMWATCH_JOINED_CGROUPNS"

// execFunc replaces the process image (syscall.Exec).
type execFunc func(argv0 string, argv, envv []string) error

// hostCgroupNamespace makes sure oomwatch reads /proc/PID/cgroup as the
// host writes cgroup paths. In a private cgroup namespace (the default of
// containerd and CRI-O on cgroup v2 nodes, podman --cgroupns=private) the
// kernel renders every path relative to oomwatch's own cgroup: its own
// cgroup reads "/", so it would watch itself and pass the never-oomwatch
// check of freeze and cgroup-kill, PID 1 reads "/../..", and tasks of a
// sibling container seem to be in another cgroup, so reset-adj refuses them.
// There oomwatch joins the host's cgroup namespace (PID 1's, or kthreadd's)
// and re-executes itself, so that every thread is in it: setns(2) moves one
// thread only. When it cannot join (no CAP_SYS_ADMIN, no ptrace access to
// PID 1 or kthreadd, not in the host's PID namespace), it refuses to start
// with exit status 78: restarting cannot fix the container's set-up.
//
// It returns "" or, after the re-exec, the "OWN:HOST" inodes it joined from
// and to. On success in a private namespace it does not return.
func hostCgroupNamespace(proc procfs.FS, exec execFunc) (string, error) {
	joined, wasJoined := os.LookupEnv(joinedEnv)
	if wasJoined {
		// Alert hooks and anything else oomwatch starts need not see it.
		_ = os.Unsetenv(joinedEnv)
	}
	ns := proc.CheckCgroupNamespace(os.Getpid())
	if !ns.Private {
		return joined, nil
	}
	refuse := func(why string) error {
		return &exitError{code: exitConfig, err: fmt.Errorf(
			"oomwatch runs in a private cgroup namespace (%s) and %s. There every /proc/PID/cgroup path is relative to oomwatch's own cgroup, "+
				"so it could not tell its own cgroup or PID 1's from the others and would act on the wrong tasks. "+
				"Run it in the host's cgroup namespace (podman/docker --cgroupns=host), or privileged and in the host's PID namespace "+
				"(Kubernetes: privileged: true, hostPID: true) so that it can join it", ns.Evidence, why)}
	}
	switch {
	case wasJoined:
		return "", refuse("is still there after joining the host's (" + joined + ")")
	case ns.HostPID == 0:
		return "", refuse("cannot open the host's: neither PID 1's nor kthreadd's /proc/PID/ns/cgroup is readable")
	}
	if err := proc.JoinCgroupNamespace(ns.HostPID, ns.Host); err != nil {
		return "", refuse("cannot join the host's: " + err.Error())
	}
	env := append(os.Environ(), fmt.Sprintf("%s=%d:%d", joinedEnv, ns.Own, ns.Host))
	err := exec(filepath.Join(proc.Root(), "self", "exe"), os.Args, env)
	// Only this thread is in the host's namespace now: do not go on.
	return "", &exitError{code: exitFailed, err: fmt.Errorf("re-executing oomwatch in the host's cgroup namespace: %w", err)}
}
