package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// corruptStateError says that a state file could not be read as a whole
// (bad JSON, a record that makes no sense) and what became of it.
type corruptStateError struct {
	File      string
	Aside     string // where the damaged file was kept; "" if it could not be
	Recovered int    // records read before the damage, kept in File
	Err       error  // what is wrong with the file
	KeepErr   error  // why it could not be kept aside, or the recovered records rewritten
}

func (e *corruptStateError) Error() string {
	if e.Aside == "" {
		return fmt.Sprintf("%s is corrupt (%v) and cannot be kept aside (%v): it is left as it is and not written again, %d records recovered from it", e.File, e.Err, e.KeepErr, e.Recovered)
	}
	s := fmt.Sprintf("%s is corrupt (%v): kept as %s, %d records recovered from it", e.File, e.Err, e.Aside, e.Recovered)
	if e.KeepErr != nil {
		s += fmt.Sprintf(" (not yet rewritten: %v)", e.KeepErr)
	}
	return s
}

func (e *corruptStateError) Unwrap() error { return e.Err }

// Writable reports whether the file may be written again: only once its
// damaged content is safe in Aside.
func (e *corruptStateError) Writable() bool { return e.Aside != "" }

// loadRecords reads a JSON array of records from file; a missing file is no
// records. The records are decoded one at a time, so a damaged file (cut
// short by a full disk, edited by hand) still yields every record before
// the damage; a record of the wrong shape, or one check refuses, is left
// out and the records after it are still read. A damaged file is first
// hard-linked to file.corrupt-<time> (a crash at any point leaves the
// original content under one of the two names), then replaced by the
// recovered records, and a *corruptStateError says so. If it cannot be
// kept aside it is left untouched and must not be written.
func loadRecords[T any](file string, check func(T) error) ([]T, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	recs, bad := decodeRecords(b, check)
	if bad == nil {
		return recs, nil
	}
	e := &corruptStateError{File: file, Recovered: len(recs), Err: bad}
	aside := file + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Link(file, aside); err != nil {
		e.KeepErr = err
		return recs, e
	}
	e.Aside = aside
	if recs == nil {
		recs = []T{}
	}
	out, err := json.MarshalIndent(recs, "", "  ")
	if err == nil {
		err = writeAtomic(file, out)
	}
	e.KeepErr = err
	return recs, e
}

func decodeRecords[T any](b []byte, check func(T) error) ([]T, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("want a JSON array of records, got %v %v", tok, err)
	}
	var recs []T
	var bad []error
	for i := 0; dec.More(); i++ {
		var r T
		if err := dec.Decode(&r); err != nil {
			bad = append(bad, fmt.Errorf("record %d: %w", i, err))
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				continue // the whole value was read: the next record follows
			}
			return recs, errors.Join(bad...)
		}
		if err := check(r); err != nil {
			bad = append(bad, fmt.Errorf("record %d: %w", i, err))
			continue
		}
		recs = append(recs, r)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		bad = append(bad, fmt.Errorf("unterminated array: %v %v", tok, err))
	} else if _, err := dec.Token(); err != io.EOF {
		bad = append(bad, errors.New("data after the array"))
	}
	return recs, errors.Join(bad...)
}

// logCorrupt reports a damaged state file once, naming where it was kept.
func logCorrupt(log zerolog.Logger, e *corruptStateError, todo string) {
	ev := log.Error().Str("event", "state_corrupt").Str("file", e.File).Int("recovered", e.Recovered).AnErr("damage", e.Err)
	if e.Aside == "" {
		ev.AnErr("keep_error", e.KeepErr).Msg("state file is corrupt and cannot be kept aside: left untouched and not written again; " + todo)
		return
	}
	if e.KeepErr != nil {
		ev = ev.AnErr("rewrite_error", e.KeepErr)
	}
	ev.Str("kept_as", e.Aside).Msg("state file is corrupt: kept aside as " + e.Aside + "; " + todo)
}
