package cgnames

import (
	"strings"
	"testing"
	"unicode/utf8"
)

const (
	dockerID = "9ec39b91e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80912cf3d"
	k8sID    = "34dc0b5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a3376"
	podUID   = "74c13223-5a00-11e9-b385-42010a80018d"
	podUIDus = "74c13223_5a00_11e9_b385_42010a80018d"
)

func TestParseNamesTheOutermostContainerOfEachRuntime(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Names
	}{
		{"root", "/", Names{}},
		{"empty", "", Names{}},
		{"plain service", "/system.slice/ssh.service", Names{Unit: "ssh.service", Slice: "system.slice"}},
		{"user session", "/user.slice/user-1000.slice/session-3.scope", Names{Unit: "session-3.scope", Slice: "user-1000.slice"}},
		{"debian lxc.service is no container", "/system.slice/lxc.service", Names{Unit: "lxc.service", Slice: "system.slice"}},

		// LXC by version (ECOSYSTEM §4.1).
		{"lxc<=3.0", "/lxc/web1", Names{Container: "web1", Runtime: LXC}},
		{"lxc<=3.0 v1 line with inner unit", "11:devices:/lxc/x1/system.slice/snapd.service",
			Names{Container: "x1", Runtime: LXC, Unit: "snapd.service", Slice: "system.slice"}},
		{"lxc 3.1 payload", "/lxc.payload/web1", Names{Container: "web1", Runtime: LXC}},
		{"lxc 3.1 monitor", "/lxc.monitor/web1", Names{Container: "web1", Runtime: LXC, Monitor: true}},
		{"lxc>=4 payload", "/lxc.payload.web1", Names{Container: "web1", Runtime: LXC}},
		{"lxc>=4 payload v2 line", "0::/lxc.payload.web1/init.scope", Names{Container: "web1", Runtime: LXC, Unit: "init.scope"}},
		{"lxc>=4 attach", "/lxc.payload.web1/.lxc", Names{Container: "web1", Runtime: LXC}},
		{"lxc>=4 monitor", "/lxc.monitor.web1", Names{Container: "web1", Runtime: LXC, Monitor: true}},
		{"lxd project", "/lxc.payload.prod_web1", Names{Container: "prod_web1", Runtime: LXC}},
		{"lxc retry suffix kept", "/lxc.payload.web1-1", Names{Container: "web1-1", Runtime: LXC}},
		{"lxc.cgroup.dir", "/mygroup/lxc.payload.web1", Names{Container: "web1", Runtime: LXC}},
		{"lxc nested: outermost", "/lxc.payload.outer/lxc.payload.inner", Names{Container: "outer", Runtime: LXC}},
		{"proxmox limit", "/lxc/101", Names{Container: "101", Runtime: LXC}},
		{"proxmox tasks", "/lxc/101/ns", Names{Container: "101", Runtime: LXC}},
		{"proxmox tasks deep", "/lxc/101/ns/system.slice/cron.service", Names{Container: "101", Runtime: LXC, Unit: "cron.service", Slice: "system.slice"}},
		{"proxmox monitor", "/lxc.monitor/101", Names{Container: "101", Runtime: LXC, Monitor: true}},
		{"lxc@ unit", "/system.slice/system-lxc.slice/lxc@web1.service",
			Names{Container: "web1", Runtime: LXC, Unit: "lxc@web1.service", Slice: "system-lxc.slice"}},
		{"lxc relative under lxc@", "/system.slice/lxc@web1.service/lxc.payload.web1",
			Names{Container: "web1", Runtime: LXC, Unit: "lxc@web1.service", Slice: "system.slice"}},
		{"lxc@ escaped", `/system.slice/lxc@my\x2dct.service`, Names{Container: "my-ct", Runtime: LXC, Unit: `lxc@my\x2dct.service`, Slice: "system.slice"}},

		// Docker.
		{"docker systemd driver", "0::/system.slice/docker-" + dockerID + ".scope",
			Names{Container: dockerID[:12], Runtime: Docker, Unit: "docker-" + dockerID + ".scope", Slice: "system.slice"}},
		{"docker cgroupfs driver", "/docker/" + dockerID, Names{Container: dockerID[:12], Runtime: Docker}},
		{"docker daemon is no container", "/system.slice/docker.service", Names{Unit: "docker.service", Slice: "system.slice"}},
		{"docker in lxc: the lxc container", "/lxc.payload.c1/system.slice/docker-" + dockerID + ".scope",
			Names{Container: "c1", Runtime: LXC, Unit: "docker-" + dockerID + ".scope", Slice: "system.slice"}},

		// Podman.
		{"podman rootful", "0::/machine.slice/libpod-fedcba9876543210.scope/container",
			Names{Container: "fedcba987654", Runtime: Podman, Unit: "libpod-fedcba9876543210.scope", Slice: "machine.slice"}},
		{"podman conmon", "/machine.slice/libpod-conmon-fedcba9876543210.scope",
			Names{Container: "fedcba987654", Runtime: Podman, Monitor: true, Unit: "libpod-conmon-fedcba9876543210.scope", Slice: "machine.slice"}},
		{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + dockerID + ".scope",
			Names{Container: dockerID[:12], Runtime: Podman, Unit: "libpod-" + dockerID + ".scope", Slice: "user.slice"}},
		{"podman cgroupfs", "/libpod_parent/libpod-" + dockerID, Names{Container: dockerID[:12], Runtime: Podman}},
		{"podman cgroupfs bare id", "/libpod_parent/" + dockerID, Names{Container: dockerID[:12], Runtime: Podman}},

		// Kubernetes.
		{"k8s systemd burstable", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDus + ".slice/cri-containerd-" + k8sID + ".scope",
			Names{Container: k8sID[:12], Runtime: Kubernetes, Pod: podUID, Unit: "cri-containerd-" + k8sID + ".scope", Slice: "kubepods-burstable-pod" + podUIDus + ".slice"}},
		{"k8s systemd guaranteed crio", "/kubepods.slice/kubepods-pod" + podUIDus + ".slice/crio-" + k8sID + ".scope",
			Names{Container: k8sID[:12], Runtime: Kubernetes, Pod: podUID, Unit: "crio-" + k8sID + ".scope", Slice: "kubepods-pod" + podUIDus + ".slice"}},
		{"k8s systemd pod level", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDus + ".slice",
			Names{Runtime: Kubernetes, Pod: podUID, Slice: "kubepods-besteffort-pod" + podUIDus + ".slice"}},
		{"k8s systemd docker shim", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDus + ".slice/docker-" + k8sID + ".scope",
			Names{Container: k8sID[:12], Runtime: Kubernetes, Pod: podUID, Unit: "docker-" + k8sID + ".scope", Slice: "kubepods-burstable-pod" + podUIDus + ".slice"}},
		{"k8s qos level only", "/kubepods.slice/kubepods-burstable.slice", Names{Slice: "kubepods-burstable.slice"}},
		{"k8s cgroupfs", "/kubepods/besteffort/pod" + podUID + "/" + k8sID, Names{Container: k8sID[:12], Runtime: Kubernetes, Pod: podUID}},
		{"k8s cgroupfs guaranteed", "/kubepods/pod" + podUID + "/" + k8sID, Names{Container: k8sID[:12], Runtime: Kubernetes, Pod: podUID}},
		{"k8s cgroupfs pod level", "/kubepods/burstable/pod" + podUID, Names{Runtime: Kubernetes, Pod: podUID}},

		// containerd outside Kubernetes.
		{"containerd scope", "/system.slice/cri-containerd-" + k8sID + ".scope",
			Names{Container: k8sID[:12], Runtime: Containerd, Unit: "cri-containerd-" + k8sID + ".scope", Slice: "system.slice"}},
		{"ctr default namespace", "/default/redis1", Names{Container: "redis1", Runtime: Containerd}},
		{"default not at root", "/x/default/redis1", Names{}},
		{"containerd daemon", "/system.slice/containerd.service", Names{Unit: "containerd.service", Slice: "system.slice"}},

		// systemd-machined.
		{"nspawn machine scope", `/machine.slice/machine-deb\x2dtest.scope`,
			Names{Container: "deb-test", Runtime: Nspawn, Unit: `machine-deb\x2dtest.scope`, Slice: "machine.slice"}},
		{"nspawn service", "/machine.slice/systemd-nspawn@deb12.service/payload",
			Names{Container: "deb12", Runtime: Nspawn, Unit: "systemd-nspawn@deb12.service", Slice: "machine.slice"}},

		// Malformed and hostile shapes.
		{"bare lxc", "/lxc", Names{}},
		{"empty payload name", "/lxc.payload.", Names{}},
		{"short docker id kept", "/docker/abc", Names{}},
		{"bad escape kept", `/system.slice/lxc@a\x2.service`, Names{Container: `a\x2`, Runtime: LXC, Unit: `lxc@a\x2.service`, Slice: "system.slice"}},
		{"double slashes", "//lxc.payload.web1//", Names{Container: "web1", Runtime: LXC}},
		{"not a proc line", "a:b", Names{}},

		// Names a tenant gives the cgroups inside its container: the
		// host's container cgroup above them wins.
		{"tenant names an lxc payload", "/lxc.payload.web1/lxc.payload.prod-db", Names{Container: "web1", Runtime: LXC}},
		{"tenant names an lxc monitor", "/lxc.payload.web1/lxc.monitor.prod-db", Names{Container: "web1", Runtime: LXC}},
		{"tenant names an lxc 3.x monitor", "/lxc/101/ns/lxc.monitor/prod-db", Names{Container: "101", Runtime: LXC}},
		{"tenant in docker names lxc", "/docker/" + dockerID + "/lxc.payload.prod-db", Names{Container: dockerID[:12], Runtime: Docker}},
		{"tenant in podman names conmon", "/machine.slice/libpod-fedcba9876543210.scope/container/libpod-conmon-0123456789ab.scope",
			Names{Container: "fedcba987654", Runtime: Podman, Unit: "libpod-conmon-0123456789ab.scope", Slice: "machine.slice"}},
		{"tenant in k8s names a pod and container", "/kubepods/burstable/pod" + podUID + "/" + k8sID + "/kubepods/pod" + podUID[:8] + "/" + dockerID,
			Names{Container: k8sID[:12], Runtime: Kubernetes, Pod: podUID}},
		{"tenant in k8s names a machine", "/kubepods.slice/kubepods-pod" + podUIDus + ".slice/crio-" + k8sID + ".scope/machine-prod.scope",
			Names{Container: k8sID[:12], Runtime: Kubernetes, Pod: podUID, Unit: "machine-prod.scope", Slice: "kubepods-pod" + podUIDus + ".slice"}},
		{"kubernetes in lxc: the lxc container", "/lxc.payload.kind1/kubepods/besteffort/pod" + podUID + "/" + k8sID, Names{Container: "kind1", Runtime: LXC}},
		{"tenant in nspawn names docker", "/machine.slice/systemd-nspawn@deb12.service/payload/docker/" + dockerID,
			Names{Container: "deb12", Runtime: Nspawn, Unit: "systemd-nspawn@deb12.service", Slice: "machine.slice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Parse(tc.in)
			got.ID = "" // TestParseID
			if got != tc.want {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

// TestParseID: the whole id of a container known by its short id, the key
// into its runtime's state; nothing for a named container or an id that is
// not a 64-hex one cut short.
func TestParseID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/system.slice/docker-" + dockerID + ".scope", dockerID},
		{"/docker/" + dockerID, dockerID},
		{"/docker/" + dockerID + "/lxc.payload.prod-db", dockerID},
		{"/machine.slice/libpod-" + dockerID + ".scope/container", dockerID},
		{"/machine.slice/libpod-conmon-" + dockerID + ".scope", dockerID},
		{"/libpod_parent/libpod-" + dockerID, dockerID},
		{"/libpod_parent/" + dockerID, dockerID},
		{"/system.slice/cri-containerd-" + k8sID + ".scope", k8sID},
		{"/kubepods/besteffort/pod" + podUID + "/" + k8sID, k8sID},
		{"/machine.slice/libpod-fedcba987654.scope", ""}, // already short
		{"/system.slice/docker-web.scope", ""},           // not hex: kept as the name
		{"/lxc.payload.web1", ""},
		{"/system.slice/ssh.service", ""},
	} {
		if got := Parse(tc.in).ID; got != tc.want {
			t.Errorf("Parse(%q).ID = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseBoundsNames(t *testing.T) {
	long := strings.Repeat("a", 300)
	if got := Parse("/lxc.payload." + long); len(got.Container) != MaxLen {
		t.Errorf("container name length %d, want %d", len(got.Container), MaxLen)
	}
	// A multi-byte rune straddling the bound is dropped whole.
	name := strings.Repeat("a", MaxLen-1) + "é" + "tail"
	got := Parse("/lxc.payload." + name)
	if len(got.Container) != MaxLen-1 || !utf8.ValidString(got.Container) {
		t.Errorf("container %q (len %d): want %d valid bytes", got.Container, len(got.Container), MaxLen-1)
	}
	if got := Parse("/" + long + ".slice/" + long + ".service"); len(got.Slice) != MaxLen || len(got.Unit) != MaxLen {
		t.Errorf("slice %d, unit %d bytes: want %d", len(got.Slice), len(got.Unit), MaxLen)
	}
	// Untrusted bytes are kept as they are (within the bound).
	if got := Parse("/lxc.payload.we\x1bb1"); got.Container != "we\x1bb1" {
		t.Errorf("container %q: want the bytes as written", got.Container)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/lxc/x1", "/lxc.payload.web1/.lxc", "/lxc.monitor.a", "/lxc/101/ns",
		"0::/system.slice/docker-" + dockerID + ".scope", "/docker/" + dockerID,
		"/machine.slice/libpod-fedcba9876543210.scope/container", "/libpod_parent/" + dockerID,
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDus + ".slice/cri-containerd-" + k8sID + ".scope",
		"/kubepods/besteffort/pod" + podUID + "/" + k8sID, `/machine.slice/machine-a\x2db.scope`,
		"11:memory:/lxc/x1", "/default/x", `lxc@\x`, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Parse(s)
		if n.ID != "" && !strings.HasPrefix(n.ID, n.Container) {
			t.Fatalf("Parse(%q): id %q does not start with container %q", s, n.ID, n.Container)
		}
		for _, v := range []string{n.Container, n.ID, n.Pod, n.Unit, n.Slice} {
			if len(v) > MaxLen {
				t.Fatalf("Parse(%q): name of %d bytes exceeds %d", s, len(v), MaxLen)
			}
		}
		switch n.Runtime {
		case "", LXC, Docker, Podman, Kubernetes, Containerd, Nspawn:
		default:
			t.Fatalf("Parse(%q): runtime %q", s, n.Runtime)
		}
		if n.Pod != "" && n.Runtime != Kubernetes {
			t.Fatalf("Parse(%q): pod %q with runtime %q", s, n.Pod, n.Runtime)
		}
	})
}

// BenchmarkParse: every armed cgroup is parsed once (the per-container cap).
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Parse("/oomwatch-scale-1234/c00042")
		Parse("/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope")
	}
}
