// Package cgnames names what runs in a cgroup from its path alone: the
// container (LXC, Docker, Podman, Kubernetes, containerd, systemd-nspawn),
// the innermost systemd unit and slice. It is pure string work: no I/O, no
// runtime API calls, standard library only.
//
// Names come from paths that containers choose, so they are untrusted: they
// are kept byte for byte (callers escape them where they print them) but cut
// to MaxLen bytes. The container is the outermost one the path names: that
// cgroup was made by the host's runtime, while everything below it is named
// by whoever runs inside (a sub-cgroup "lxc.payload.prod-db" of container
// web1 is still web1).
package cgnames

import (
	"strings"
	"unicode/utf8"
)

// MaxLen bounds every name returned (the DNS name limit, which LXC, Docker
// and Kubernetes names fit in).
const MaxLen = 253

// Runtimes reported in Names.Runtime.
const (
	LXC        = "lxc"
	Docker     = "docker"
	Podman     = "podman"
	Kubernetes = "kubernetes"
	Containerd = "containerd"
	Nspawn     = "systemd-nspawn"
)

// shortID is how many characters of a 64-hex container id are kept, as
// docker ps and crictl print them.
const shortID = 12

// Names is what a cgroup path says about its owner. Every field may be empty.
type Names struct {
	// Container is the outermost container's name (LXC, nspawn) or short id
	// (Docker, Podman, Kubernetes, containerd).
	Container string
	// ID is the whole container id when Container is its short form (a
	// 64-hex id cut to 12): the key into the runtime's own state, which
	// knows the container's name (package ctrstate).
	ID string
	// Runtime is one of the constants above, or "" when no container was
	// recognised.
	Runtime string
	// Monitor marks the host-side helper of a container rather than its
	// payload: LXC's lxc.monitor.NAME (the lxc-start monitor) and Podman's
	// conmon scope. Never a target for remediation (package policy refuses
	// it). Inside a container nothing is a monitor: the name would be the
	// tenant's.
	Monitor bool
	// Pod is the Kubernetes pod uid (dashes restored) when Runtime is
	// kubernetes.
	Pod string
	// Unit is the innermost systemd unit (.service or .scope), as written.
	Unit string
	// Slice is the innermost systemd slice.
	Slice string
}

// Parse names the owner of a cgroup. cgroupPath is a path relative to the
// hierarchy root ("/lxc.payload.web1"), or a whole line of /proc/PID/cgroup
// ("0::/system.slice/x.service", "11:devices:/lxc/x1"). For nested
// containers the outermost one wins: the cgroups below it are named by the
// tenant (unlike procps, which reports the innermost).
func Parse(cgroupPath string) Names {
	var n Names
	var arr [16]string // most paths: no allocation (oomwatch parses every cgroup it arms)
	segs := appendSegments(arr[:0], stripProcPrefix(cgroupPath))
	kube := false // below kubepods: container scopes belong to a pod
	for i := 0; i < len(segs); i++ {
		s := segs[i]
		next := ""
		if i+1 < len(segs) {
			next = segs[i+1]
		}
		switch {
		case strings.HasSuffix(s, ".slice"):
			n.Slice = s
		case strings.HasSuffix(s, ".service"), strings.HasSuffix(s, ".scope"):
			n.Unit = s
		}

		// LXC ≥ 4.0, LXD ≥ 4, Incus: lxc.payload.NAME, monitor lxc.monitor.NAME.
		// lxc-attach'ed tasks sit in lxc.payload.NAME/.lxc: that segment
		// matches nothing below, so the name stays.
		if name, ok := strings.CutPrefix(s, "lxc.payload."); ok && name != "" {
			n.set(LXC, name, false)
			continue
		}
		if name, ok := strings.CutPrefix(s, "lxc.monitor."); ok && name != "" {
			n.set(LXC, name, true)
			continue
		}
		// LXC 3.1–3.2: lxc.payload/NAME and lxc.monitor/NAME; LXC ≤ 3.0 and
		// Proxmox: lxc/NAME (Proxmox puts the tasks in lxc/VMID/ns, the limit
		// on lxc/VMID; "ns" matches nothing, so the name stays).
		if (s == "lxc.payload" || s == "lxc.monitor" || s == "lxc") && next != "" {
			n.set(LXC, next, s == "lxc.monitor")
			i++
			continue
		}
		if name, ok := unitInstance(s, "lxc@", ".service"); ok {
			n.set(LXC, unescape(name), false)
			continue
		}

		// Kubernetes, systemd driver: kubepods.slice/kubepods-<qos>.slice/
		// kubepods-<qos>-pod<uid with _>.slice/<prefix>-<id>.scope
		// (Guaranteed pods have no <qos> level). cgroupfs driver:
		// /kubepods/<qos>/pod<uid>/<id>.
		if s == "kubepods" || strings.HasPrefix(s, "kubepods.") || strings.HasPrefix(s, "kubepods-") {
			kube = true
			if uid, ok := kubePodSlice(s); ok {
				n.setPod(uid)
			}
			continue
		}
		if kube {
			if uid, ok := strings.CutPrefix(s, "pod"); ok && isUID(uid) {
				n.setPod(uid)
				continue
			}
			if id, ok := containerScope(s, "cri-containerd-", "crio-", "docker-"); ok {
				n.setKeepPod(Kubernetes, id)
				continue
			}
			if n.Pod != "" && isHex(s) {
				n.setKeepPod(Kubernetes, s)
				continue
			}
		}

		// Docker: docker-<id>.scope (systemd driver), /docker/<id> (cgroupfs).
		if id, ok := containerScope(s, "docker-"); ok {
			n.setID(Docker, id, false)
			continue
		}
		if s == "docker" && isHex(next) {
			n.setID(Docker, next, false)
			i++
			continue
		}

		// Podman: libpod-<id>.scope (systemd), /libpod_parent/libpod-<id>
		// (cgroupfs); conmon runs in libpod-conmon-<id>.scope.
		if id, ok := strings.CutPrefix(s, "libpod-conmon-"); ok && id != "" {
			n.setID(Podman, strings.TrimSuffix(id, ".scope"), true)
			continue
		}
		if id, ok := strings.CutPrefix(s, "libpod-"); ok && id != "" {
			n.setID(Podman, strings.TrimSuffix(id, ".scope"), false)
			continue
		}
		if s == "libpod_parent" && isHex(next) {
			n.setID(Podman, next, false)
			i++
			continue
		}

		// containerd outside Kubernetes: cri-containerd-<id>.scope, and
		// ctr/nerdctl's /default/<id> (namespace "default") at the root.
		if id, ok := containerScope(s, "cri-containerd-"); ok {
			n.setID(Containerd, id, false)
			continue
		}
		if i == 0 && s == "default" && next != "" {
			n.setID(Containerd, next, false)
			i++
			continue
		}

		// systemd-machined: machine.slice/machine-NAME.scope,
		// systemd-nspawn@NAME.service (names systemd-escaped).
		if name, ok := unitInstance(s, "machine-", ".scope"); ok {
			n.set(Nspawn, unescape(name), false)
			continue
		}
		if name, ok := unitInstance(s, "systemd-nspawn@", ".service"); ok {
			n.set(Nspawn, unescape(name), false)
			continue
		}
	}
	n.Container = Bound(n.Container)
	n.ID = Bound(n.ID)
	n.Pod = Bound(n.Pod)
	n.Unit = Bound(n.Unit)
	n.Slice = Bound(n.Slice)
	return n
}

// set records a container unless an outer one is already known: what a
// path names below the host's container cgroup, the tenant chose.
func (n *Names) set(runtime, name string, monitor bool) {
	if n.Runtime != "" {
		return
	}
	n.Runtime, n.Container, n.Monitor = runtime, name, monitor
}

// setID records a container known by its id (Docker, Podman, containerd),
// as set does: Container is the short id, ID the whole one.
func (n *Names) setID(runtime, id string, monitor bool) {
	if n.Runtime != "" {
		return
	}
	n.set(runtime, short(id), monitor)
	if n.Container != id {
		n.ID = id
	}
}

// setPod records a Kubernetes pod unless a container (or pod) is already
// known.
func (n *Names) setPod(uid string) {
	if n.Runtime != "" {
		return
	}
	n.Runtime, n.Pod = Kubernetes, uid
}

// setKeepPod records the container of the pod found above it (or of a
// kubepods tree whose pod level was not recognised); nothing once a
// container is known.
func (n *Names) setKeepPod(runtime, id string) {
	if n.Container != "" || n.Runtime != "" && n.Runtime != Kubernetes {
		return
	}
	n.Runtime, n.Container = runtime, short(id)
	if n.Container != id {
		n.ID = id
	}
}

// stripProcPrefix turns a /proc/PID/cgroup line ("ID:controllers:/path")
// into its path. A cgroup path itself always starts with "/" or is relative
// and has no two leading colon-separated fields.
func stripProcPrefix(s string) string {
	s = strings.TrimRight(s, "\n")
	if strings.HasPrefix(s, "/") {
		return s
	}
	id, rest, ok := strings.Cut(s, ":")
	if !ok || !isDigits(id) {
		return s
	}
	if _, p, ok := strings.Cut(rest, ":"); ok {
		return p
	}
	return s
}

// appendSegments appends the non-empty, non-"." elements of p to out.
func appendSegments(out []string, p string) []string {
	for p != "" {
		var s string
		s, p, _ = strings.Cut(p, "/")
		if s != "" && s != "." {
			out = append(out, s)
		}
	}
	return out
}

// unitInstance returns NAME from PREFIXNAMESUFFIX.
func unitInstance(s, prefix, suffix string) (string, bool) {
	if !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) || len(s) <= len(prefix)+len(suffix) {
		return "", false
	}
	return s[len(prefix) : len(s)-len(suffix)], true
}

// containerScope returns ID from PREFIX<ID>.scope for any of prefixes.
func containerScope(s string, prefixes ...string) (string, bool) {
	for _, p := range prefixes {
		if id, ok := unitInstance(s, p, ".scope"); ok {
			return id, true
		}
	}
	return "", false
}

// kubePodSlice returns the pod uid of kubepods[-qos]-pod<uid>.slice, with
// the dashes that systemd escaping turned into underscores restored.
func kubePodSlice(s string) (string, bool) {
	body, ok := strings.CutSuffix(s, ".slice")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(body, "-pod")
	if i < 0 {
		return "", false
	}
	uid := strings.ReplaceAll(body[i+len("-pod"):], "_", "-")
	return uid, isUID(uid)
}

func isUID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isHexByte(c) && c != '-' {
			return false
		}
	}
	return true
}

// isHex reports whether s looks like a container id: at least 12 hex digits.
func isHex(s string) bool {
	if len(s) < shortID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// short cuts a hex container id to the 12 characters tools print; other
// names are kept whole.
func short(id string) string {
	if isHex(id) {
		return id[:shortID]
	}
	return id
}

// unescape undoes systemd unit-name escaping ("\x2d" → "-"), which
// machined and template units use. Malformed escapes are kept as written.
func unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' && isHexByte(s[i+2]) && isHexByte(s[i+3]) {
			b.WriteByte(unhex(s[i+2])<<4 | unhex(s[i+3]))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// Bound cuts s to MaxLen bytes without splitting a UTF-8 sequence: the
// bound on every name, for the names read elsewhere too (package ctrstate).
func Bound(s string) string {
	if len(s) <= MaxLen {
		return s
	}
	n := MaxLen
	for k := 0; k < utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]); k++ {
		n--
	}
	return s[:n]
}

// Label is how a container is shown to people: its name and short id, as
// docker ps and podman ps list them ("web 3f2a1b4c5d6e"), or the one of
// them that is known. The caller escapes it.
// name comes from the runtime's state (package ctrstate).
func Label(container, name string) string {
	switch {
	case name == "" || name == container:
		return container
	case container == "":
		return name
	}
	return name + " " + container
}
