package client

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/queue"
)

// metaRelaysDown is the bucketMeta key of the relays whose last attempt
// failed, in this run or an earlier one (downRecord), so that a command
// run without an agent, which opens the client anew each time, does not
// try first a relay that the previous command found down.
const metaRelaysDown = "relays-down"

// rememberDown is how long after an attempt to reach a relay failed a
// later run still tries that relay after the others (see candidates),
// unless a run reached it since. It is short, so that a relay that came
// back gets new queues again soon, even from commands that never need it.
const rememberDown = 10 * time.Minute

// downRecord is what metaRelaysDown holds: by relay fingerprint (in
// hex), the Unix minute of the last failed attempt known (when the run
// that failed closed, or when the relay went down in a run that did not
// close).
type downRecord map[string]int64

// loadDown reads the relays remembered as down at now, dropping those
// older than rememberDown.
func loadDown(tx *vault.Tx, now time.Time) (downRecord, error) {
	b, err := tx.Get(bucketMeta, []byte(metaRelaysDown))
	if errors.Is(err, vault.ErrNotFound) {
		return downRecord{}, nil
	}
	if err != nil {
		return nil, err
	}
	var rec downRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, err
	}
	for fp, m := range rec {
		if at := time.Unix(m*60, 0); now.Sub(at) > rememberDown {
			delete(rec, fp)
		}
	}
	return rec, nil
}

// storeDown writes rec, or deletes the key when it is empty.
func storeDown(tx *vault.Tx, rec downRecord) error {
	if len(rec) == 0 {
		err := tx.Delete(bucketMeta, []byte(metaRelaysDown))
		if errors.Is(err, vault.ErrNotFound) {
			return nil
		}
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Put(bucketMeta, []byte(metaRelaysDown), b)
}

// rememberReachable records in tx that the relay fp was found down (at
// now) or reached.
func rememberReachable(tx *vault.Tx, fp queue.Fingerprint, down bool, now time.Time) error {
	rec, err := loadDown(tx, now)
	if err != nil {
		return err
	}
	k := hex.EncodeToString(fp[:])
	_, had := rec[k]
	if !down && !had {
		return nil
	}
	if down {
		rec[k] = now.Unix() / 60
	} else {
		delete(rec, k)
	}
	return storeDown(tx, rec)
}

// rememberStillDown records, as the client closes, that the relays whose
// last attempt in this run failed were down at now.
func (c *Client) rememberStillDown(now time.Time) error {
	c.mu.Lock()
	var down []queue.Fingerprint
	for fp, d := range c.relayDown {
		if d {
			down = append(down, fp)
		}
	}
	c.mu.Unlock()
	if len(down) == 0 {
		return nil
	}
	return c.store.Update(func(tx *vault.Tx) error {
		rec, err := loadDown(tx, now)
		if err != nil {
			return err
		}
		for _, fp := range down {
			rec[hex.EncodeToString(fp[:])] = now.Unix() / 60
		}
		return storeDown(tx, rec)
	})
}

// downBefore returns the relays that an earlier run, or this one, found
// down less than rememberDown before now.
func downBefore(tx *vault.Tx, now time.Time) (map[queue.Fingerprint]bool, error) {
	rec, err := loadDown(tx, now)
	if err != nil {
		return nil, err
	}
	out := make(map[queue.Fingerprint]bool, len(rec))
	for k := range rec {
		var fp queue.Fingerprint
		if b, err := hex.DecodeString(k); err == nil && len(b) == len(fp) {
			copy(fp[:], b)
			out[fp] = true
		}
	}
	return out, nil
}
