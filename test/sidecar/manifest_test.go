package sidecar

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// TestDaemonSetManifest checks packaging/container/daemonset.yaml for the
// settings the sidecar needs (there is no cluster here to apply it to): host
// PID namespace, privileged, /sys/fs/cgroup from the host read-write, the
// state directory on the node, resources, no host network.
func TestDaemonSetManifest(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(topDir(), "packaging", "container", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type mount struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	}
	var ds struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					HostPID     bool `yaml:"hostPID"`
					HostNetwork bool `yaml:"hostNetwork"`
					Containers  []struct {
						Image           string   `yaml:"image"`
						Args            []string `yaml:"args"`
						SecurityContext struct {
							Privileged bool `yaml:"privileged"`
						} `yaml:"securityContext"`
						Resources struct {
							Requests map[string]string `yaml:"requests"`
							Limits   map[string]string `yaml:"limits"`
						} `yaml:"resources"`
						VolumeMounts []mount `yaml:"volumeMounts"`
					} `yaml:"containers"`
					Volumes []struct {
						Name     string `yaml:"name"`
						HostPath struct {
							Path string `yaml:"path"`
						} `yaml:"hostPath"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" {
		t.Errorf("apiVersion/kind %s/%s", ds.APIVersion, ds.Kind)
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the template's labels", k, v)
		}
	}
	ps := ds.Spec.Template.Spec
	if !ps.HostPID {
		t.Error("hostPID must be true: oomwatch reads and writes the node's /proc")
	}
	if ps.HostNetwork {
		t.Error("hostNetwork: the pod network serves /metrics; the node's is not needed")
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	if !c.SecurityContext.Privileged {
		t.Error("container must be privileged")
	}
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Errorf("args %q: want run first (the image's entrypoint is /usr/bin/oomwatch)", c.Args)
	}
	if c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Error("memory request and limit must be set")
	}
	hostPaths := map[string]string{}
	for _, v := range ps.Volumes {
		hostPaths[v.Name] = v.HostPath.Path
	}
	want := map[string]string{"/sys/fs/cgroup": "/sys/fs/cgroup", "/var/lib/oomwatch": "/var/lib/oomwatch"}
	for _, m := range c.VolumeMounts {
		if hp, ok := want[m.MountPath]; ok {
			if hostPaths[m.Name] != hp {
				t.Errorf("%s is mounted from %q, want hostPath %s", m.MountPath, hostPaths[m.Name], hp)
			}
			if m.ReadOnly {
				t.Errorf("%s must be read-write", m.MountPath)
			}
			delete(want, m.MountPath)
		}
	}
	for p := range want {
		t.Errorf("no mount at %s", p)
	}
	if !strings.Contains(c.Image, "oomwatch") {
		t.Errorf("image %q", c.Image)
	}
}
