package systemd

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestJournalWriterOnlyForTheJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	if w, ok := JournalWriter(); ok || w != nil {
		t.Fatal("journal writer without JOURNAL_STREAM")
	}
	t.Setenv("JOURNAL_STREAM", "0:0")
	if _, ok := JournalWriter(); ok {
		t.Fatal("journal writer for a stream that is not stderr (a child of a journald-logged process)")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if w, ok := JournalWriter(); !ok || w == nil {
		t.Fatal("no journal writer although stderr is the stream named by JOURNAL_STREAM")
	}
}
