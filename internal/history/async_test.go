package history

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestAsyncOrderAndErrors(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var states []error
	a := NewAsync(Open(dir, Options{}), 8, func(err error) { mu.Lock(); states = append(states, err); mu.Unlock() })
	inc := incident("aaaa", t0)
	a.Append(func() Record { return Opened(inc, Names{}, []string{"evidence gathered on the writer"}) })
	a.Append(func() Record { return Resolved(inc, "gone", nil) })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a.Append(func() Record { return Start("late", 1) }) // after Close: dropped, no panic
	incs, err := Read(dir)
	if err != nil || len(incs) != 1 || incs[0].State != StateResolved || len(incs[0].KernelLog) != 1 {
		t.Fatalf("%+v %v", incs, err)
	}
	if a.Dropped() != 1 {
		t.Errorf("dropped %d", a.Dropped())
	}

	// Failing journal: one state change reported, not one per record.
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)
	b := NewAsync(Open(file, Options{}), 8, func(err error) { mu.Lock(); states = append(states, err); mu.Unlock() })
	for range 5 {
		b.Append(func() Record { return Start("v", 1) })
	}
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(states) != 1 || states[0] == nil {
		t.Fatalf("states: %v", states)
	}
}
