package systemd

import (
	"io"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/rs/zerolog/journald"
)

// JournalWriter returns a zerolog writer that sends each event to journald as
// structured fields, and true, when stderr is connected to the journal
// ($JOURNAL_STREAM matches stderr, systemd.exec(5)); otherwise nil, false and
// the caller keeps writing JSON lines to stderr.
//
// journald.NewJournalDWriter upper-cases keys (cgroup → CGROUP, oom-kill →
// OOM_KILL), maps levels to priorities, sets MESSAGE from the message and
// keeps the whole event in JSON=, so
//
//	journalctl -u oomwatch EVENT=incident VERDICT=loop
//
// finds incidents. Use it as zerolog.New(w) without Timestamp(): journald
// stamps each entry itself.
func JournalWriter() (io.Writer, bool) {
	ok, err := journal.StderrIsJournalStream()
	if err != nil || !ok {
		return nil, false
	}
	return journald.NewJournalDWriter(), true
}
