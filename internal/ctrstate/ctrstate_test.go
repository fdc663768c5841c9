package ctrstate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgnames"
)

const (
	id1 = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80912cf3d9ec39b91e"
	id2 = "9ec39b91e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80912cf3d"
)

func write(t *testing.T, root, rel, body string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func dockerCfg(id, name string) string {
	// the shape of Docker 20.10's config.v2.json, trimmed
	return `{"StreamConfig":{},"State":{"Running":true,"Pid":4242},"ID":"` + id + `","Created":"2024-01-01T00:00:00Z",` +
		`"Path":"/bin/sh","Args":["-c","sleep 1d"],"Config":{"Hostname":"3f2a1b4c5d6e","Env":["PATH=/bin"]},` +
		`"Name":` + name + `,"Driver":"overlay2"}`
}

func docker(id string) cgnames.Names {
	return cgnames.Names{Runtime: cgnames.Docker, Container: id[:12], ID: id}
}
func podman(id string) cgnames.Names {
	return cgnames.Names{Runtime: cgnames.Podman, Container: id[:12], ID: id}
}

func TestDocker(t *testing.T) {
	long := strings.Repeat("n", 300)
	for _, tc := range []struct {
		name, file, want string
	}{
		{"name without its slash", dockerCfg(id1, `"/web"`), "web"},
		{"no slash kept as is", dockerCfg(id1, `"web"`), "web"},
		{"hostile bytes kept", dockerCfg(id1, `"/we\nb\u001b[31m\"$(id)"`), "we\nb\x1b[31m\"$(id)"},
		{"long name cut", dockerCfg(id1, `"/`+long+`"`), long[:cgnames.MaxLen]},
		{"no name", dockerCfg(id1, `""`), ""},
		{"name not a string", dockerCfg(id1, `{"a":1}`), ""},
		{"another container's file", dockerCfg(id2, `"/other"`), ""},
		{"corrupt", `{"ID":"` + id1 + `","Name":"/web"`, ""},
		{"not an object", `["/web"]`, ""},
		{"empty", ``, ""},
		{"binary", "\x00\xff\xfe", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, filepath.Join(DockerContainers, id1, "config.v2.json"), tc.file)
			if got := (Reader{Root: root}).Name(docker(id1)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDockerOversizedFileIsNoName(t *testing.T) {
	root := t.TempDir()
	big := dockerCfg(id1, `"/web"`)
	big = big[:len(big)-1] + `,"Pad":"` + strings.Repeat("x", MaxDockerConfig) + `"}`
	write(t, root, filepath.Join(DockerContainers, id1, "config.v2.json"), big)
	if got := (Reader{Root: root}).Name(docker(id1)); got != "" {
		t.Errorf("oversized config: got %q, want no name", got)
	}
}

func TestMissingOrUnreadable(t *testing.T) {
	root := t.TempDir()
	r := Reader{Root: root}
	if got := r.Name(docker(id1)); got != "" {
		t.Errorf("no docker state: %q", got)
	}
	if got := r.Name(podman(id1)); got != "" {
		t.Errorf("no podman state: %q", got)
	}
	// a directory where the file should be
	if err := os.MkdirAll(filepath.Join(root, DockerContainers, id1, "config.v2.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := r.Name(docker(id1)); got != "" {
		t.Errorf("directory as config: %q", got)
	}
	// a fifo never blocks the reader: it is not a regular file
	fifo := filepath.Join(root, PodmanStorage, "overlay-containers", "containers.json")
	if err := os.MkdirAll(filepath.Dir(fifo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mkfifo(fifo); err != nil {
		t.Skip("mkfifo:", err)
	}
	done := make(chan string)
	go func() { done <- r.Name(podman(id1)) }()
	select {
	case got := <-done:
		if got != "" {
			t.Errorf("fifo: %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a fifo blocked")
	}
}

func TestNotAnIDNeverReadsAPath(t *testing.T) {
	root := t.TempDir()
	// what a path-traversing "id" would reach
	write(t, root, "etc/config.v2.json", dockerCfg("../../../etc", `"/secret"`))
	r := Reader{Root: root}
	for _, n := range []cgnames.Names{
		{Runtime: cgnames.Docker, ID: "../../../etc"},
		{Runtime: cgnames.Docker, ID: strings.ToUpper(id1)},
		{Runtime: cgnames.Docker, ID: id1[:63]},
		{Runtime: cgnames.Docker, ID: ""},
		{Runtime: cgnames.LXC, Container: "web1"},
		{Runtime: cgnames.Kubernetes, ID: id1},
	} {
		if got := r.Name(n); got != "" {
			t.Errorf("Name(%+v) = %q, want none", n, got)
		}
	}
}

func podmanJSON(entries ...string) string { return "[" + strings.Join(entries, ",") + "]" }

func podmanEntry(id, names string) string {
	// the shape of containers/storage's containers.json (Podman 4.3)
	return `{"id":"` + id + `","names":` + names + `,"image":"b1c2","layer":"d4e5",` +
		`"metadata":"{\"image-name\":\"localhost/hogbox:latest\",\"name\":\"x\"}","created":"2024-01-01T00:00:00Z","flags":{"MountLabel":""}}`
}

func TestPodman(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes: cut on a rune boundary
	for _, tc := range []struct {
		name, driver, file, want string
	}{
		{"first of several", "overlay", podmanJSON(podmanEntry(id2, `["other"]`), podmanEntry(id1, `["web","alias"]`)), "web"},
		{"vfs driver", "vfs", podmanJSON(podmanEntry(id1, `["web"]`)), "web"},
		{"hostile bytes kept", "overlay", podmanJSON(podmanEntry(id1, `["a\tb\u0007\\"]`)), "a\tb\x07\\"},
		{"long name cut", "overlay", podmanJSON(podmanEntry(id1, `["`+long+`"]`)), long[:cgnames.MaxLen-1]},
		{"no names", "overlay", podmanJSON(podmanEntry(id1, `[]`)), ""},
		{"not listed", "overlay", podmanJSON(podmanEntry(id2, `["other"]`)), ""},
		{"corrupt before it", "overlay", `[{"id":"` + id2 + `","names":["x"]},{"id":` + podmanEntry(id1, `["web"]`) + `]`, ""},
		{"corrupt after it: found first", "overlay", `[` + podmanEntry(id1, `["web"]`) + `,{"id":}]`, "web"},
		{"truncated", "overlay", podmanJSON(podmanEntry(id1, `["web"]`))[:40], ""},
		{"names not strings", "overlay", podmanJSON(podmanEntry(id1, `[1,2]`)), ""},
		{"an object, not an array", "overlay", podmanEntry(id1, `["web"]`), ""},
		{"empty", "overlay", ``, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, filepath.Join(PodmanStorage, tc.driver+"-containers", "containers.json"), tc.file)
			got := (Reader{Root: root}).Name(podman(id1))
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPodmanOversizedFileIsNoName(t *testing.T) {
	root := t.TempDir()
	pad := podmanEntry(id2, `["`+strings.Repeat("p", 1<<20)+`"]`)
	entries := []string{podmanEntry(id1, `["web"]`)}
	for i := 0; i < MaxPodmanStorage/(1<<20)+1; i++ {
		entries = append(entries, pad)
	}
	write(t, root, filepath.Join(PodmanStorage, "overlay-containers", "containers.json"), podmanJSON(entries...))
	if got := (Reader{Root: root}).Name(podman(id1)); got != "" {
		t.Errorf("oversized containers.json: got %q, want no name", got)
	}
}

// TestFromCgroupPath: the whole chain, from the path the watchdog sees to
// the name docker ps shows.
func TestFromCgroupPath(t *testing.T) {
	root := t.TempDir()
	write(t, root, filepath.Join(DockerContainers, id1, "config.v2.json"), dockerCfg(id1, `"/web"`))
	write(t, root, filepath.Join(PodmanStorage, "overlay-containers", "containers.json"), podmanJSON(podmanEntry(id2, `["db"]`)))
	r := Reader{Root: root}
	for cg, want := range map[string]string{
		"/system.slice/docker-" + id1 + ".scope":  "web",
		"/docker/" + id1:                          "web",
		"/machine.slice/libpod-" + id2 + ".scope": "db",
		"/libpod_parent/libpod-" + id2:            "db",
		"/machine.slice/libpod-" + id1 + ".scope": "", // a Docker id is no Podman container
		"/lxc.payload.web1":                       "",
	} {
		if got := r.Name(cgnames.Parse(cg)); got != want {
			t.Errorf("%s: got %q, want %q", cg, got, want)
		}
	}
}

func BenchmarkPodman1000(b *testing.B) {
	root := b.TempDir()
	var entries []string
	for i := 0; i < 1000; i++ {
		id := []byte(id2)
		copy(id, []byte(strings.Repeat("0", 4)))
		id[0], id[1], id[2] = "0123456789"[i/100], "0123456789"[i/10%10], "0123456789"[i%10]
		entries = append(entries, podmanEntry(string(id), `["c`+string(id[:3])+`"]`))
	}
	entries = append(entries, podmanEntry(id1, `["web"]`)) // the last one
	p := filepath.Join(root, PodmanStorage, "overlay-containers", "containers.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(podmanJSON(entries...)), 0o600); err != nil {
		b.Fatal(err)
	}
	r := Reader{Root: root}
	b.ReportAllocs()
	for b.Loop() {
		if r.Name(podman(id1)) != "web" {
			b.Fatal("not found")
		}
	}
}
