package client

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// Buckets of the local store. The store keeps keys in clear, so keys
// reveal nothing: random IDs and sequence numbers; everything else is in
// the (encrypted) values.
var (
	bucketRelays      = []byte("relays")          // random ID (16) -> canonical address
	bucketContacts    = []byte("contacts")        // contact ID (16 random bytes) -> contactRecord
	bucketOutbox      = []byte("outbox")          // seq (8) -> outboxEntry
	bucketEvents      = []byte("events")          // seq (8) -> eventRecord, until the application takes it
	bucketByName      = []byte("index-name")      // Blind(indexName, name) -> contact ID (vault.PutIndex)
	bucketByRecipient = []byte("index-recipient") // Blind(indexRecipient, recipient ID) -> contact ID (vault.PutIndex)
	bucketMeta        = []byte("meta")            // metaIndex -> indexVersion once the index buckets hold every contact
	bucketTaken       = []byte("taken")           // seq (8) -> event ID (8) || token, the last TakenKept events taken with a token
)

// The index buckets: labels of vault.Tx.Blind, and the meta key that says
// the indexes are complete.
const (
	indexName      = "name"
	indexRecipient = "recipient"
	metaIndex      = "index"
	indexVersion   = 1
)

// recentIDs is how many relay message IDs a contact remembers, to
// recognise a message the relay delivers again after a lost ACK.
const recentIDs = 64

// contactRecord is one contact as stored. Keys are raw bytes: X25519
// private keys (32), IDs (24).
type contactRecord struct {
	ID          []byte
	Name        string
	State       ContactState
	Created     time.Time
	SharedRelay bool

	// Recv is the queue we receive on (we are its recipient).
	Recv recvQueue
	// Send is the contact's queue we send to; nil while invited.
	Send *sendQueue
	// Inviter holds our invitation secrets while invited.
	Inviter []byte
	// Ratchet is the end-to-end state; nil while invited.
	Ratchet []byte

	SendSeq  uint64 // payload seq of the last message queued to send
	LastSent []byte // SHA-256 of that payload
	RecvSeq  uint64 // payload seq of the last message received
	LastRecv []byte // SHA-256 of that payload
	Recent   [][]byte

	// Rotation is the rotation of Recv under way (rotate.go); nil when
	// none.
	Rotation *recvRotation `json:",omitempty"`
	// SendRotation is the contact's rotation of the queue we send to:
	// the new queue it announced (QADD) and our keys for it, until it
	// tells us to use it (QUSE); nil when none.
	SendRotation *sendRotation `json:",omitempty"`
	// OldRecv are queues we received on before a rotation, drained, to
	// be deleted on their relays (DEL) by the rotation loop.
	OldRecv []recvQueue `json:",omitempty"`
	// RotateAt is when the automatic rotation (Config.RotateEvery) next
	// rotates Recv; zero until drawn.
	RotateAt time.Time `json:",omitzero"`
	// Asked is set when the contact asked us to rotate (QASK) and the
	// rotation loop has not started that rotation yet; AskedAt is when
	// we last honoured such a request.
	Asked   bool      `json:",omitempty"`
	AskedAt time.Time `json:",omitzero"`
	// Receipts is whether we send the contact delivery receipts (default:
	// as the global setting says).
	Receipts ReceiptMode `json:",omitempty"`
	// ReceiptFrom is the lowest seq of ours whose hash may still be kept
	// for a receipt (receipts.go); 0 before the first.
	ReceiptFrom uint64 `json:",omitempty"`
}

type recvQueue struct {
	Relay        string // canonical address, with the password if any
	RecipientID  []byte
	SenderID     []byte
	RecipientKey []byte // authorization, X25519 private
	MessageKey   []byte
	E2EKey       []byte // envelope key, X25519 private
}

type sendQueue struct {
	Relay     string // canonical address
	SenderID  []byte
	AuthKey   []byte // our sender authorization key, X25519 private
	EnvKey    []byte // our envelope key for this queue, X25519 private
	PeerE2E   []byte // the recipient's envelope key
	Secured   bool   // our SKEY was answered OK
	Confirmed bool   // the first message (confirmation or ready) was accepted
}

func (r *recvQueue) queue() (link.Queue, error) {
	var q link.Queue
	k, err := queue.ParsePrivateKey(r.RecipientKey)
	if err != nil {
		return q, err
	}
	q.RecipientKey = k
	copy(q.RecipientID[:], r.RecipientID)
	copy(q.SenderID[:], r.SenderID)
	copy(q.MessageKey[:], r.MessageKey)
	return q, nil
}

// outboxEntry is a message waiting for the relay's OK. Its bytes are
// final: a retry sends exactly the same envelope.
type outboxEntry struct {
	Contact  []byte
	Relay    string
	SenderID []byte
	AuthKey  []byte
	Secure   bool // SKEY with AuthKey first (idempotent)
	Envelope []byte
	Seq      uint64
	// Connects: when the relay accepts it, the contact is connected (the
	// inviter's ready message).
	Connects bool
	// Text: a message of the application's (not a handshake message), whose
	// acceptance is reported with EventSent.
	Text bool
	// Receipt: a delivery receipt (receipts.go), dropped without a problem
	// reported when a relay refuses it for good (the contact forgot us).
	Receipt bool `json:",omitempty"`
}

// eventRecord is an Event waiting for the application.
type eventRecord struct {
	Kind    EventKind
	Contact string
	Relay   string `json:",omitempty"`
	Text    string
	Seq     uint64
	Time    time.Time
	Problem string
}

// marshal encodes a record as JSON, leaving <, > and & as they are (not
// six-byte escapes), so that a text's encoding stays near its length and
// the store's padding classes (vault.MinValueSize) hide it.
func marshal(v any) []byte {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		panic(err) // only plain data types
	}
	return b.Bytes()
}

func unmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return errors.Join(vault.ErrCorrupt, err)
	}
	return nil
}

func seqKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func (c *Client) loadContacts() ([]*contactRecord, error) {
	var out []*contactRecord
	err := c.store.View(func(tx *vault.Tx) error {
		var err error
		out, err = contactsIn(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Oldest first.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Created.Before(out[j-1].Created); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

func contactsIn(tx *vault.Tx) ([]*contactRecord, error) {
	var out []*contactRecord
	err := tx.ForEach(bucketContacts, nil, func(_, v []byte) error {
		r := new(contactRecord)
		if err := unmarshal(v, r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// contactByName finds a contact in tx through the name index: one
// index entry and one contact read, however many contacts there are.
func contactByName(tx *vault.Tx, name string) (*contactRecord, error) {
	r, err := contactByIndex(tx, bucketByName, tx.Blind(indexName, []byte(name)))
	if err != nil {
		return nil, err
	}
	if r.Name != name {
		return nil, ErrNoContact
	}
	return r, nil
}

// contactByRecipient finds the contact one of whose receiving queues
// (recvQueues) is rid, in tx, through the recipient index.
func (c *Client) contactByRecipient(tx *vault.Tx, rid queue.ID) (*contactRecord, error) {
	r, err := contactByIndex(tx, bucketByRecipient, tx.Blind(indexRecipient, rid[:]))
	if err != nil {
		return nil, err
	}
	if r.recvQueue(rid) == nil {
		return nil, ErrNoContact
	}
	return r, nil
}

// recvQueues returns every queue we receive the contact's messages on:
// Recv, the new queue of a rotation under way, and the old queues not
// yet deleted.
func (r *contactRecord) recvQueues() []*recvQueue {
	qs := []*recvQueue{&r.Recv}
	if r.Rotation != nil {
		qs = append(qs, &r.Rotation.New)
	}
	for i := range r.OldRecv {
		qs = append(qs, &r.OldRecv[i])
	}
	return qs
}

// recvQueue returns the receiving queue of r whose recipient ID is rid,
// nil if none.
func (r *contactRecord) recvQueue(rid queue.ID) *recvQueue {
	for _, q := range r.recvQueues() {
		if bytes.Equal(q.RecipientID, rid[:]) {
			return q
		}
	}
	return nil
}

// contactByIndex reads the contact that the entry key of index names, and
// returns ErrNoContact if there is none. Callers check that the contact
// has the name or ID they looked for.
func contactByIndex(tx *vault.Tx, index, key []byte) (*contactRecord, error) {
	id, err := tx.Get(index, key)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, ErrNoContact
	}
	if err != nil {
		return nil, err
	}
	v, err := tx.Get(bucketContacts, id)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, ErrNoContact
	}
	if err != nil {
		return nil, err
	}
	r := new(contactRecord)
	if err := unmarshal(v, r); err != nil {
		return nil, err
	}
	return r, nil
}

// indexContact writes the index entries of a new contact r: its name and
// its receiving queues. Rename and rotation (rotate.go) change them.
func indexContact(tx *vault.Tx, r *contactRecord) error {
	if err := tx.PutIndex(bucketByName, tx.Blind(indexName, []byte(r.Name)), r.ID); err != nil {
		return err
	}
	for _, q := range r.recvQueues() {
		if err := tx.PutIndex(bucketByRecipient, tx.Blind(indexRecipient, q.RecipientID), r.ID); err != nil {
			return err
		}
	}
	return nil
}

// buildIndex indexes every contact once, in a store made before the index
// buckets existed.
func (c *Client) buildIndex() error {
	return c.store.Update(func(tx *vault.Tx) error {
		if _, err := tx.Get(bucketMeta, []byte(metaIndex)); err == nil {
			return nil
		} else if !errors.Is(err, vault.ErrNotFound) {
			return err
		}
		all, err := contactsIn(tx)
		if err != nil {
			return err
		}
		for _, r := range all {
			if err := indexContact(tx, r); err != nil {
				return err
			}
		}
		return tx.Put(bucketMeta, []byte(metaIndex), []byte{indexVersion})
	})
}

func putContact(tx *vault.Tx, r *contactRecord) error {
	return tx.Put(bucketContacts, r.ID, marshal(r))
}

// pushEvent stores an event for the application, in tx.
func (c *Client) pushEvent(tx *vault.Tx, ev Event) error {
	n, err := tx.Seq(bucketEvents)
	if err != nil {
		return err
	}
	rec := eventRecord{Kind: ev.Kind, Contact: ev.Contact, Relay: ev.Relay, Text: ev.Text, Seq: ev.Seq, Time: ev.Time}
	if ev.Problem != nil {
		rec.Problem = ev.Problem.Error()
	}
	return tx.Put(bucketEvents, seqKey(n), marshal(rec))
}

// notify wakes a loop without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// problemErrors maps stored problem texts back to their sentinels, so
// that errors.Is works on events read back from the store.
var problemErrors = []error{ErrTampered, ErrDuplicate, ErrGap, ErrBadHash, ErrContactGone, ErrNoForwarder, ErrReceiptMismatch, ErrRotationAbandoned}

type problem struct {
	msg   string
	cause error
}

func (p *problem) Error() string { return p.msg }
func (p *problem) Unwrap() error { return p.cause }

func problemFrom(s string) error {
	if s == "" {
		return nil
	}
	for _, e := range problemErrors {
		if bytes.HasPrefix([]byte(s), []byte(e.Error())) {
			return &problem{msg: s, cause: e}
		}
	}
	return errors.New(s)
}

// emitLoop hands stored events to the application, oldest first, and
// deletes each once the application has received it.
func (c *Client) emitLoop() {
	defer c.wg.Done()
	for {
		var key []byte
		var rec eventRecord
		err := c.store.View(func(tx *vault.Tx) error {
			return tx.ForEach(bucketEvents, nil, func(k, v []byte) error {
				key = bytes.Clone(k)
				if err := unmarshal(v, &rec); err != nil {
					return err
				}
				return errStop
			})
		})
		if err != nil && !errors.Is(err, errStop) {
			c.cfg.Logger.Error("reading events", "err", err)
		}
		if key == nil {
			select {
			case <-c.ctx.Done():
				return
			case <-c.wakeEvents:
				continue
			}
		}
		ev := Event{Kind: rec.Kind, Contact: rec.Contact, Relay: rec.Relay, Text: rec.Text, Seq: rec.Seq, Time: rec.Time, Problem: problemFrom(rec.Problem)}
		select {
		case <-c.ctx.Done():
			return
		case c.events <- ev:
		}
		if err := c.store.Update(func(tx *vault.Tx) error { return tx.Delete(bucketEvents, key) }); err != nil {
			c.cfg.Logger.Error("deleting an event", "err", err)
		}
	}
}

// errStop ends a ForEach early.
var errStop = errors.New("stop")
