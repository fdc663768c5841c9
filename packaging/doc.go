// Package packaging holds the Debian packaging of oomwatch: build-deb.sh
// (nfpm v2.45.2, or dpkg-deb), the maintainer scripts in debian/, the man
// page and deb.mk. Its tests build the package and run lintian; the systemd
// VM test (test/sdvm) installs it into a real systemd system.
package packaging
