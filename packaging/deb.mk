# Debian package targets; included from the top Makefile (include packaging/deb.mk).
#   make deb        dist/oomwatch_<version>_amd64.deb (nfpm v2.45.2, falls back to dpkg-deb)
#   make lintian    lintian --pedantic on it; fails on errors
#   make sdvm-deps  tools of the systemd-VM tier + the cached Debian 12 systemd image
DEB_OUTDIR  ?= dist
DEB_VERSION ?= $(VERSION)
LINTIAN     ?= lintian

.PHONY: deb lintian sdvm-deps

deb:
	@mkdir -p $(DEB_OUTDIR)
	GO=$(GO) bash packaging/build-deb.sh '$(DEB_VERSION)' $(DEB_OUTDIR) | tail -n1 > $(DEB_OUTDIR)/.deb-path
	@cat $(DEB_OUTDIR)/.deb-path

lintian: deb
	@command -v $(LINTIAN) >/dev/null || { echo "lintian not found: apt-get install lintian (or make sdvm-deps)"; exit 1; }
	$(LINTIAN) --pedantic --display-info --tag-display-limit 0 --fail-on error $$(cat $(DEB_OUTDIR)/.deb-path)

# debootstrap/lintian/zstd/qemu, the cloud kernel and the rootfs image
# (cached in $${OOMWATCH_VM_CACHE:-/var/tmp/oomwatch-vm}/sdvm/<hash>); needs root.
sdvm-deps:
	bash test/sdvm/ensure-image.sh >/dev/null
