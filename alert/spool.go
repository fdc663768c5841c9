package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// spool is one sink's directory of undelivered documents, one file each,
// named <unix nanoseconds>-<sequence>.json so a lexical sort is the queue
// order. Files are written atomically (temp file, fsync, rename, fsync of
// the directory): after a crash a file is either whole or absent.
type spool struct {
	dir      string
	log      zerolog.Logger
	seq      atomic.Uint64
	mkdir    sync.Once
	mkdirErr error
	reported atomic.Bool
}

func newSpool(stateDir, sink string, log zerolog.Logger) *spool {
	return &spool{dir: filepath.Join(stateDir, "spool", sink), log: log}
}

// report logs the first spool error only: a read-only state directory must
// not turn every alert into an error line.
func (sp *spool) report(err error) {
	if sp.reported.CompareAndSwap(false, true) {
		sp.log.Error().Err(err).Str("dir", sp.dir).Msg("alert spool not writable: delivering from memory only, alerts will not survive a restart")
	}
}

func (sp *spool) write(body []byte) (string, error) {
	sp.mkdir.Do(func() { sp.mkdirErr = os.MkdirAll(sp.dir, 0o700) })
	if sp.mkdirErr != nil {
		sp.report(sp.mkdirErr)
		return "", sp.mkdirErr
	}
	name := fmt.Sprintf("%020d-%010d.json", time.Now().UnixNano(), sp.seq.Add(1))
	path, err := writeAtomic(sp.dir, name, body)
	if err != nil {
		sp.report(err)
		return "", err
	}
	return path, nil
}

func writeAtomic(dir, name string, body []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("spool %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	path := filepath.Join(dir, name)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("spool %s: %w", name, err)
	}
	if err := syncDir(dir); err != nil {
		return path, nil // the file is complete; only its name may not survive a crash
	}
	return path, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (sp *spool) remove(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		sp.log.Warn().Err(err).Str("file", path).Msg("alert spool: cannot remove delivered document")
	}
}

type spooled struct {
	path   string
	queued time.Time
	doc    Document
}

// maxSpooledDoc bounds one spooled file: a document is a few KiB (its
// strings are capped), so anything larger is not one of ours.
const maxSpooledDoc = 1 << 20

// load returns the newest max spooled documents, oldest first; the older
// ones are removed and counted in dropped (the queue could not hold them
// anyway). Leftover temp files (a crash mid-write), unreadable files and
// files over maxSpooledDoc are removed.
func (sp *spool) load(max int) (out []spooled, dropped int) {
	ents, err := os.ReadDir(sp.dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			sp.report(err)
		}
		return nil, 0
	}
	type cand struct {
		path string
		n    int64
	}
	var cands []cand
	for _, e := range ents {
		path := filepath.Join(sp.dir, e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") {
			os.Remove(path)
			continue
		}
		ns, _, ok := strings.Cut(e.Name(), "-")
		n, perr := strconv.ParseInt(ns, 10, 64)
		if !ok || perr != nil || !strings.HasSuffix(e.Name(), ".json") || !e.Type().IsRegular() {
			continue // not ours
		}
		cands = append(cands, cand{path, n})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].path < cands[j].path })
	if max > 0 && len(cands) > max {
		for _, c := range cands[:len(cands)-max] {
			os.Remove(c.path)
		}
		dropped = len(cands) - max
		cands = cands[len(cands)-max:]
	}
	for _, c := range cands {
		path, n := c.path, c.n
		body, err := readBounded(path, maxSpooledDoc)
		var doc Document
		if err == nil {
			err = json.Unmarshal(body, &doc)
		}
		if err == nil && doc.Schema != Schema {
			err = fmt.Errorf("schema %q", doc.Schema)
		}
		if err != nil {
			sp.log.Warn().Err(err).Str("file", path).Msg("alert spool: unreadable document removed")
			os.Remove(path)
			continue
		}
		out = append(out, spooled{path: path, queued: time.Unix(0, n), doc: doc})
	}
	return out, dropped
}

// readBounded reads the file at path, refusing one over max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("larger than %d bytes: not a spooled document", max)
	}
	return b, err
}
