// Package guest holds the scenarios the VM tier runs inside test VMs.
//
// Everything except this file carries the build tag vmguest: a plain
// `go test ./...` on the host compiles nothing here. The host test
// (test/vmtest/vm_test.go) builds them with
//
//	CGO_ENABLED=0 go test -c -tags vmguest -o guest.test ./test/vmtest/guest
//
// and runs the binary as root in each kernel/cgroup-mode VM with
// OOMWATCH_VM_MODE, OOMWATCH_VM_KERNEL, OOMWATCH_VM_HOG and OOMWATCH_VM_DAEMON set.
// A scenario is a plain Go test function; see helpers.go.
package guest
