// Package ctrstate names Docker and Podman containers from the state their
// runtime keeps on disk, where the cgroup path gives only the id: the name
// `docker ps` and `podman ps` show. It only reads files (no runtime API, no
// socket, standard library only), under a filesystem root given by the
// caller, and every read is bounded.
//
// The files are written by the runtimes, as root, but the names in them
// were chosen by whoever started the container: they are kept byte for
// byte (callers escape them where they print them) and cut to
// cgnames.MaxLen bytes. A missing, unreadable, oversized or malformed file
// is no name, never an error: the caller keeps the short id.
package ctrstate

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/oomwatch/oomwatch/internal/cgnames"
)

// Where the runtimes keep their state (their default data roots), relative
// to the filesystem root.
const (
	// DockerContainers holds one directory per container, named by its id,
	// with config.v2.json ("Name": "/web").
	DockerContainers = "var/lib/docker/containers"
	// PodmanStorage is containers/storage's graph root; each storage
	// driver keeps DRIVER-containers/containers.json, one array of every
	// container ("id", "names").
	PodmanStorage = "var/lib/containers/storage"
)

// podmanDrivers are the containers/storage drivers whose containers.json
// is looked at, most common first.
var podmanDrivers = []string{"overlay", "vfs", "btrfs", "zfs"}

// Read bounds: a container's config.v2.json is a few KiB (its env, labels
// and mounts); containers.json is about 1 KiB per container.
const (
	MaxDockerConfig  = 1 << 20
	MaxPodmanStorage = 16 << 20
)

// idLen is the length of a whole Docker or Podman container id (64 hex).
const idLen = 64

// Reader reads container names under a filesystem root.
type Reader struct {
	Root string // "/" on the host; "" means "/"
}

// Name returns the runtime's name of the container n names by its id
// (Docker or Podman, n.ID set by cgnames.Parse), or "" when the runtime's
// state does not say or n is another kind of container.
func (r Reader) Name(n cgnames.Names) string {
	if !isID(n.ID) {
		return ""
	}
	switch n.Runtime {
	case cgnames.Docker:
		return r.docker(n.ID)
	case cgnames.Podman:
		return r.podman(n.ID)
	}
	return ""
}

func (r Reader) path(rel ...string) string {
	root := r.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(append([]string{root}, rel...)...)
}

// docker reads "Name" of the container's config.v2.json; Docker stores it
// with a leading "/", which docker ps does not show.
func (r Reader) docker(id string) string {
	var cfg struct {
		ID   string
		Name string
	}
	if !decodeFile(r.path(DockerContainers, id, "config.v2.json"), MaxDockerConfig, func(d *json.Decoder) bool {
		return d.Decode(&cfg) == nil
	}) || cfg.ID != id {
		return ""
	}
	return cgnames.Bound(strings.TrimPrefix(cfg.Name, "/"))
}

// podman finds the container in containers/storage's containers.json, one
// element at a time, and returns its first name (the one podman ps shows).
func (r Reader) podman(id string) string {
	for _, drv := range podmanDrivers {
		name, found := "", false
		decodeFile(r.path(PodmanStorage, drv+"-containers", "containers.json"), MaxPodmanStorage, func(d *json.Decoder) bool {
			if t, err := d.Token(); err != nil || t != json.Delim('[') {
				return false
			}
			for d.More() {
				var c struct {
					ID    string   `json:"id"`
					Names []string `json:"names"`
				}
				if d.Decode(&c) != nil {
					return false
				}
				if c.ID == id {
					found = true
					if len(c.Names) > 0 {
						name = cgnames.Bound(c.Names[0])
					}
					return true
				}
			}
			return true
		})
		if found {
			return name
		}
	}
	return ""
}

// decodeFile opens a regular file of at most max bytes and hands a decoder
// of it to decode; false when it cannot be opened, is not a regular file,
// is larger than max, or decode says so.
func decodeFile(path string, max int64, decode func(*json.Decoder) bool) bool {
	// O_NONBLOCK: a fifo put there opens without a writer and is refused
	// below, instead of blocking the open (no effect on a regular file)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Size() > max {
		return false
	}
	// the size may change while it is read: the limit holds anyway
	return decode(json.NewDecoder(io.LimitReader(f, max)))
}

func isID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
