// Package vloggc runs Badger's value-log GC in rounds, for the stores that
// keep values in the value log (the edge's queue, the hub's profile store).
package vloggc

import (
	"errors"
	"log/slog"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// MaxFilesPerRound bounds the files one Round rewrites.
const MaxFilesPerRound = 8

// Round rewrites up to MaxFilesPerRound value-log files of db of which at
// least half is garbage, stopping early when stop is closed or when no
// file qualifies. It returns how many it rewrote; a failure other than
// "nothing to rewrite" is logged.
func Round(db *badger.DB, stop <-chan struct{}, log *slog.Logger) (rewritten int) {
	for range MaxFilesPerRound {
		select {
		case <-stop:
			return rewritten
		default:
		}
		err := db.RunValueLogGC(0.5)
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				log.Warn("value-log GC failed", "err", err)
			}
			return rewritten
		}
		rewritten++
	}
	return rewritten
}

// Loop runs a Round every interval until stop is closed.
func Loop(db *badger.DB, interval time.Duration, stop <-chan struct{}, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		Round(db, stop, log)
	}
}
