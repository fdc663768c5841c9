# Container image targets; included from the top Makefile (include packaging/container/image.mk).
#   make image         OCI image FROM scratch (static binary + default config) in the local
#                      containers-storage as $(IMAGE_NAME) and $(IMAGE_OUTDIR)/oomwatch_<tag>.oci.tar;
#                      buildah, no registry, no Docker engine
#   make image-deps    podman, buildah, runc (Debian; root)
#   make sidecar-test  the podman sidecar host test (root, v1 memory cgroups)
#   make lxc-vm-test   real LXC containers in the systemd VM (qemu, root)
#   make containers-vm-test  real Docker and Podman containers in the systemd VM (qemu, root)
IMAGE_OUTDIR ?= dist
IMAGE_NAME   ?=

.PHONY: image image-deps sidecar-test

image:
	@mkdir -p $(IMAGE_OUTDIR)
	GO=$(GO) VERSION='$(VERSION)' $(if $(IMAGE_NAME),IMAGE='$(IMAGE_NAME)') \
		bash packaging/container/build-image.sh $(IMAGE_OUTDIR) | tail -n2 > $(IMAGE_OUTDIR)/.image
	@cat $(IMAGE_OUTDIR)/.image

image-deps:
	bash packaging/container/install-podman.sh

sidecar-test: image-deps
	$(GO) test -count=1 -v -run 'TestSidecar' ./test/sidecar

# Real LXC containers in the systemd VM (qemu; builds the LXC image variant
# on first use, ~1.5 min, cached under $${OOMWATCH_VM_CACHE:-/var/tmp/oomwatch-vm}/sdvm-lxc).
.PHONY: lxc-vm-test
lxc-vm-test:
	$(GO) test -count=1 -v -run 'TestLXCInSystemd' -timeout 20m ./test/sdvm

# Real Docker and Podman containers in the systemd VM (qemu; builds the
# containers image variant on first use, cached under
# $${OOMWATCH_VM_CACHE:-/var/tmp/oomwatch-vm}/sdvm-containers).
.PHONY: containers-vm-test
containers-vm-test:
	$(GO) test -count=1 -v -run 'TestContainersInSystemd' -timeout 25m ./test/sdvm
