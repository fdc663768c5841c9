package main

import (
	"flag"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"unsafe"
)

// forkSleepers forks n children with fork(2), not exec: each is a copy of
// this process sharing its pages copy-on-write, argv included, so n tasks
// cost their kernel structures and page tables, not n copies of a long
// argv. A child only makes raw system calls (no Go runtime: it has a single
// thread and whatever locks the others held at the fork): it asks for
// SIGKILL when this process's thread dies, then pauses. On SIGTERM this
// process kills and reaps them all, then exits, so that no orphan is left to
// a PID 1 that may never reap it.
//
// With distinct, before each fork the start of the first argument after
// the flags is overwritten with the child's number: os.Args (and
// flag.Args, a part of it) are not copies but the argv area itself, which
// /proc/PID/cmdline reads, so every child, and this process after them,
// shows its own cmdline.
func forkSleepers(n int, distinct bool) {
	var first []byte
	if distinct && flag.NArg() > 0 {
		a := flag.Arg(0)
		first = unsafe.Slice(unsafe.StringData(a), len(a))
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	parent := uintptr(os.Getpid())
	pids := make([]int, 0, n)
	for i := 0; i < n; i++ {
		if first != nil {
			copy(first, strconv.Itoa(i)+"-")
		}
		pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
		if errno != 0 {
			killAll(pids)
			fail("fork child %d: %v", i, errno)
		}
		if pid == 0 {
			sleeper(parent)
		}
		pids = append(pids, int(pid))
	}
	if first != nil {
		copy(first, strconv.Itoa(n)+"-") // and the parent its own
	}
	go func() {
		<-term
		killAll(pids)
		os.Exit(0)
	}()
}

// sleeper is a forked child's whole life. Nosplit and raw system calls
// only: a stack check or a call into the scheduler could wait forever on a
// lock some other thread of the parent held at the fork.
//
//go:nosplit
func sleeper(parent uintptr) {
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	if p, _, _ := syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0); p != parent {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 1, 0, 0) // the parent died before PR_SET_PDEATHSIG
	}
	for {
		syscall.RawSyscall(syscall.SYS_PAUSE, 0, 0, 0)
	}
}

// killAll SIGKILLs pids and reaps them.
func killAll(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		for {
			if _, err := syscall.Wait4(pid, nil, 0, nil); err != syscall.EINTR {
				break
			}
		}
	}
}
