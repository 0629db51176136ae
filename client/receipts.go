package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
)

// Delivery receipts (PROTOCOL.md section 19.12): a client that has stored
// a text message sends its contact, on the reverse direction, a payload of
// kind payloadReceipt that names the message by its seq and by the
// SHA-256 of its payload; the sender checks the hash against the one it
// recorded when it sent the message, and reports EventDelivered.

// Errors of receipts.
var (
	// ErrReceiptMismatch is the Problem of an EventProblem for a receipt
	// whose hash is not that of the message we sent with its seq: the
	// contact stored another message than ours.
	ErrReceiptMismatch = errors.New("a delivery receipt does not match the message we sent")
	// ErrReceiptMode is returned for a ReceiptMode other than those
	// defined.
	ErrReceiptMode = errors.New("receipts must be on, off or default")
)

// ReceiptMode is whether we send delivery receipts.
type ReceiptMode string

// Receipt modes. A contact's mode is ReceiptsDefault unless set: it
// follows the global setting (SetReceipts), which is on unless turned off.
const (
	ReceiptsDefault ReceiptMode = ""
	ReceiptsOn      ReceiptMode = "on"
	ReceiptsOff     ReceiptMode = "off"
)

// Receipt layout: the body of a payload of kind payloadReceipt.
//
//	seq  uint64: the seq of the text payload it acknowledges
//	hash [32]:   SHA-256 of that payload, as received
const (
	payloadReceipt  = 10
	receiptBodySize = 8 + sha256.Size
)

// receiptWindow is how many of the last payloads sent to a contact can
// still get a receipt: the hash of each text sent is kept until its
// receipt comes, or until receiptWindow more payloads have been sent to
// the contact (a contact that sends no receipts, or stays offline that
// long), so that the store keeps at most receiptWindow hashes per contact.
const receiptWindow = 1024

var bucketReceipts = []byte("receipts") // Blind(indexReceipt, contact ID | seq) -> SHA-256 of the payload sent (vault.PutIndex)

const (
	indexReceipt = "receipt"
	metaReceipts = "receipts" // in bucketMeta: 1 on, 0 off; absent: on
)

func appendReceipt(b []byte, seq uint64, hash []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, hash...)
}

// parseReceipt parses the body of a receipt payload: exactly
// receiptBodySize bytes, a seq other than 0.
func parseReceipt(b []byte) (seq uint64, hash []byte, err error) {
	if len(b) != receiptBodySize {
		return 0, nil, errEnvelope
	}
	seq = binary.BigEndian.Uint64(b)
	if seq == 0 {
		return 0, nil, errEnvelope
	}
	return seq, b[8:], nil
}

// receiptKey is the key of the hash of the payload seq sent to the contact
// with ID id.
func receiptKey(tx *vault.Tx, id []byte, seq uint64) []byte {
	return tx.Blind(indexReceipt, binary.BigEndian.AppendUint64(append([]byte(nil), id...), seq))
}

// awaitReceipt records, in tx, the hash of the payload just sealed for rec
// (its SendSeq and LastSent), and forgets those older than receiptWindow.
// The caller stores rec.
func awaitReceipt(tx *vault.Tx, rec *contactRecord) error {
	if err := tx.PutIndex(bucketReceipts, receiptKey(tx, rec.ID, rec.SendSeq), rec.LastSent); err != nil {
		return err
	}
	if rec.ReceiptFrom == 0 {
		rec.ReceiptFrom = rec.SendSeq
	}
	for ; rec.ReceiptFrom+receiptWindow <= rec.SendSeq; rec.ReceiptFrom++ {
		if err := tx.Delete(bucketReceipts, receiptKey(tx, rec.ID, rec.ReceiptFrom)); err != nil {
			return err
		}
	}
	return nil
}

// dropReceipts deletes, in tx, the hashes kept for rec's receipts.
func dropReceipts(tx *vault.Tx, rec *contactRecord) error {
	for s := rec.ReceiptFrom; s != 0 && s <= rec.SendSeq; s++ {
		if err := tx.Delete(bucketReceipts, receiptKey(tx, rec.ID, s)); err != nil {
			return err
		}
	}
	return nil
}

// receiptsOn reports whether we send receipts to rec's contact.
func receiptsOn(tx *vault.Tx, rec *contactRecord) (bool, error) {
	switch rec.Receipts {
	case ReceiptsOn:
		return true, nil
	case ReceiptsOff:
		return false, nil
	}
	return globalReceipts(tx)
}

func globalReceipts(tx *vault.Tx) (bool, error) {
	v, err := tx.Get(bucketMeta, []byte(metaReceipts))
	switch {
	case errors.Is(err, vault.ErrNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	return len(v) != 1 || v[0] != 0, nil
}

// receiveReceipt handles a receipt payload from rec's contact, in tx: a
// receipt for a message we sent with a matching hash reports
// EventDelivered and forgets the hash; one whose hash differs reports
// ErrReceiptMismatch; one for a message that awaits none (delivered
// before, or older than receiptWindow) is ignored.
func (c *Client) receiveReceipt(tx *vault.Tx, rec *contactRecord, p payload) error {
	seq, hash, err := parseReceipt(p.body)
	if err != nil {
		return c.pushEvent(tx, Event{Kind: EventProblem, Contact: rec.Name, Seq: p.seq, Time: time.UnixMilli(p.time),
			Problem: fmt.Errorf("%w (receipt)", ErrTampered)})
	}
	k := receiptKey(tx, rec.ID, seq)
	want, err := tx.Get(bucketReceipts, k)
	switch {
	case errors.Is(err, vault.ErrNotFound):
		c.cfg.Logger.Debug("a receipt for a message that awaits none")
		return nil
	case err != nil:
		return err
	case !hmac.Equal(want, hash):
		return c.pushEvent(tx, Event{Kind: EventProblem, Contact: rec.Name, Seq: seq, Time: time.UnixMilli(p.time),
			Problem: fmt.Errorf("%w: message %d", ErrReceiptMismatch, seq)})
	}
	if err := tx.Delete(bucketReceipts, k); err != nil {
		return err
	}
	return c.pushEvent(tx, Event{Kind: EventDelivered, Contact: rec.Name, Seq: seq, Time: time.UnixMilli(p.time)})
}

// SetReceipts turns the sending of delivery receipts on or off for the
// contacts whose mode is ReceiptsDefault. It is on unless turned off.
func (c *Client) SetReceipts(on bool) error {
	v := byte(0)
	if on {
		v = 1
	}
	return c.store.Update(func(tx *vault.Tx) error { return tx.Put(bucketMeta, []byte(metaReceipts), []byte{v}) })
}

// Receipts reports whether we send delivery receipts to the contacts whose
// mode is ReceiptsDefault.
func (c *Client) Receipts() (bool, error) {
	var on bool
	err := c.store.View(func(tx *vault.Tx) error {
		var err error
		on, err = globalReceipts(tx)
		return err
	})
	return on, err
}

// SetContactReceipts sets whether we send delivery receipts to the contact
// called name: ReceiptsOn or ReceiptsOff whatever the global setting, or
// ReceiptsDefault to follow it.
func (c *Client) SetContactReceipts(name string, mode ReceiptMode) error {
	switch mode {
	case ReceiptsDefault, ReceiptsOn, ReceiptsOff:
	default:
		return ErrReceiptMode
	}
	return c.store.Update(func(tx *vault.Tx) error {
		rec, err := contactByName(tx, name)
		if err != nil {
			return err
		}
		rec.Receipts = mode
		return putContact(tx, rec)
	})
}
