package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// Short links and contact addresses (PROTOCOL.md section 21).

// Errors of short links and contact addresses.
var (
	// ErrLinkData is returned when the data a short link names, as the
	// relay returned it, does not match the link: changed on the relay,
	// or not made by hush. Nothing from it is used.
	ErrLinkData = errors.New("the link's data on the relay does not match the link (changed on the relay?)")
	// ErrAddressGone is returned by RequestContact when the contact
	// address no longer exists (its owner deleted it).
	ErrAddressGone = errors.New("this contact address was deleted")
	// ErrNoAddress is returned when the client has no contact address.
	ErrNoAddress = errors.New("no contact address (create one with hush address create)")
	// ErrAddressExists is returned by CreateAddress when the client has
	// one already.
	ErrAddressExists = errors.New("a contact address exists (delete it first)")
	// ErrNoRequest is returned for an unknown request ID.
	ErrNoRequest = errors.New("no such request")
	// ErrShowName is returned by RequestContact for a name to show over
	// MaxShowName bytes or not UTF-8.
	ErrShowName = fmt.Errorf("the name to show must be UTF-8 of at most %d bytes", MaxShowName)
)

// MaxShowName is the longest name a contact request can show, in bytes.
const MaxShowName = 64

// Buckets of addresses and requests (see records.go).
var (
	bucketAddress  = []byte("address")  // address ID (16 random bytes) -> addressRecord; at most one
	bucketRequests = []byte("requests") // request ID (4 random bytes) -> requestRecord
)

// envelopeRequest is the envelope kind of a contact request.
const envelopeRequest = 3

// requestIDSize is the size of a request ID (8 hex digits when shown).
const requestIDSize = 4

// addressRecord is our contact address as stored.
type addressRecord struct {
	ID         []byte
	Recv       recvQueue
	SendKey    []byte // the sender authorization key shared with requesters, X25519 private
	Link       string // the short link
	AutoAccept bool
	Created    time.Time
	Recent     [][]byte // relay message IDs of the last requests, as contactRecord.Recent
}

// requestRecord is a contact request waiting for the owner.
type requestRecord struct {
	ID         []byte
	Name       string // what the requester chose to show; may be empty
	Invitation []byte // the bytes of the requester's invitation link
	Received   time.Time
	// Auto is set when the request came with auto-accept on: until it is
	// accepted, each time the client goes online it tries again (an
	// acceptance cut short by Close).
	Auto bool
}

// Address is what the application sees of its contact address.
type Address struct {
	// Link is the short link to give to people who may ask for a contact.
	Link       string
	AutoAccept bool
	Created    time.Time
	// Relay is the relay of the address queue, without its password.
	Relay queue.Address
}

// Request is a contact request waiting for AcceptRequest or RejectRequest.
type Request struct {
	ID string
	// Name is what the requester chose to show, maybe nothing.
	Name     string
	Received time.Time
}

// addressInfo is the content of an address's link data (section 21.4).
type addressInfo struct {
	queue   queueInfo
	sendKey []byte // X25519 private
}

func (a addressInfo) append(b []byte) []byte {
	return append(a.queue.append(b), a.sendKey...)
}

func parseAddressInfo(b []byte) (addressInfo, error) {
	q, rest, err := parseQueueInfo(b)
	if err != nil || len(rest) != queue.KeySize {
		return addressInfo{}, ErrLinkData
	}
	if _, err := queue.ParsePrivateKey(rest); err != nil {
		return addressInfo{}, ErrLinkData
	}
	return addressInfo{queue: q, sendKey: bytes.Clone(rest)}, nil
}

// sealRequest builds a contact request envelope to the address queue's
// end-to-end key, from a key of its own (section 21.4).
func sealRequest(queueKey queue.Key, inv []byte, showName string) ([]byte, error) {
	inner, err := appendRequest(inv, showName)
	if err != nil {
		return nil, err
	}
	return sealInner(newKey(), queueKey, inner)
}

// appendRequest returns the inner part of a request envelope:
//
//	kind uint8 = envelopeRequest | linkLen uint16 | invitation [linkLen]
//	| nameLen uint8 (0..MaxShowName) | name [nameLen] | zeros up to envelopeInnerSize
func appendRequest(inv []byte, showName string) ([]byte, error) {
	if len(showName) > MaxShowName {
		return nil, ErrShowName
	}
	inner := make([]byte, 0, envelopeInnerSize)
	inner = append(inner, envelopeRequest)
	inner = binary.BigEndian.AppendUint16(inner, uint16(len(inv)))
	inner = append(inner, inv...)
	inner = append(inner, byte(len(showName)))
	inner = append(inner, showName...)
	if len(inner) > envelopeInnerSize {
		return nil, errEnvelope
	}
	return append(inner, make([]byte, envelopeInnerSize-len(inner))...), nil
}

// openRequest opens a contact request envelope and returns its
// invitation bytes (not yet checked) and the name it shows.
func openRequest(b []byte, queuePriv []byte) (inv []byte, name string, err error) {
	priv, err := queue.ParsePrivateKey(queuePriv)
	if err != nil {
		return nil, "", err
	}
	var sk queue.Key
	inner, err := openInner(b, priv, &sk)
	if err != nil {
		return nil, "", err
	}
	return parseRequest(inner)
}

// parseRequest parses the inner part of a request envelope (kind first,
// envelopeInnerSize bytes), returning slices of it.
func parseRequest(inner []byte) (inv []byte, name string, err error) {
	if len(inner) != envelopeInnerSize || inner[0] != envelopeRequest {
		return nil, "", errEnvelope
	}
	p := inner[1:]
	n := int(binary.BigEndian.Uint16(p))
	if 2+n+1 > len(p) {
		return nil, "", errEnvelope
	}
	inv, p = p[2:2+n], p[2+n:]
	m := int(p[0])
	if m > MaxShowName || 1+m > len(p) || !utf8.Valid(p[1:1+m]) {
		return nil, "", errEnvelope
	}
	name, p = string(p[1:1+m]), p[1+m:]
	for _, c := range p {
		if c != 0 {
			return nil, "", errEnvelope
		}
	}
	return inv, name, nil
}

// readShortLink fetches the data of short link l from its relay (LGET)
// within the relay budget and returns its content, checked (section 21.2).
// queue.AUTH from the relay is returned as is.
func (c *Client) readShortLink(ctx context.Context, l queue.ShortLink, iso string) ([]byte, error) {
	tctx, cancel := context.WithTimeout(ctx, c.relayTimeout())
	defer cancel()
	rl := c.linkTo(l.Relay, iso)
	conn, err := rl.get(tctx)
	if err != nil {
		return nil, &RelayError{l.Relay, rl.budgetErr(tctx, err)}
	}
	data, err := conn.GetLink(tctx, l.ID())
	if err != nil {
		if errors.Is(err, queue.AUTH) {
			return nil, err
		}
		return nil, &RelayError{l.Relay, rl.budgetErr(tctx, err)}
	}
	content, err := queue.OpenLinkData(l.Key, l.Kind, data)
	if err != nil {
		return nil, ErrLinkData
	}
	return content, nil
}

// InviteShort is Invite with a short link (PROTOCOL.md section 21.3): the
// invitation is stored, encrypted, on the invitation queue's relay, which
// gives it to the first who reads the link and then deletes it. The long
// link of the same invitation is not shown; the short link works once.
func (c *Client) InviteShort(ctx context.Context, name string) (string, error) {
	inv, addr, conn, q, name, err := c.invite(ctx, name)
	if err != nil {
		return "", err
	}
	k, data, err := queue.SealLinkData(queue.LinkInvitation, inv.bytes())
	if err == nil {
		id, _ := queue.LinkKeys(k)
		rctx, cancel := context.WithTimeout(ctx, c.relayTimeout())
		err = conn.SetLink(rctx, q, id, queue.LinkOnce, data)
		cancel()
	}
	if err != nil {
		c.forgetQuietly(name)
		return "", &RelayError{addr.WithoutPassword(), err}
	}
	c.subscribeNew(conn, q)
	return queue.ShortLink{Relay: addr, Kind: queue.LinkInvitation, Key: k}.String(), nil
}

// forgetQuietly forgets the contact called name after a failed step of
// making it, logging a failure.
func (c *Client) forgetQuietly(name string) {
	ctx, cancel := context.WithTimeout(c.ctx, c.relayTimeout())
	defer cancel()
	if err := c.Forget(ctx, name); err != nil {
		c.cfg.Logger.Debug("forgetting an unfinished contact", "err", err)
	}
}

// fetchInvitation reads the invitation of a short link of kind 'i'. A link
// read already (or never stored) gives ErrInvitationUsed.
func (c *Client) fetchInvitation(ctx context.Context, l queue.ShortLink, iso string) (invitation, error) {
	content, err := c.readShortLink(ctx, l, iso)
	switch {
	case errors.Is(err, queue.AUTH):
		return invitation{}, ErrInvitationUsed
	case errors.Is(err, ErrLinkData):
		return invitation{}, err
	case err != nil:
		return invitation{}, fmt.Errorf("%w: %w", ErrInviterRelay, err)
	}
	inv, err := parseInvitationBytes(content)
	if err != nil {
		return invitation{}, ErrLinkData
	}
	return inv, nil
}

// RequestContact asks for a contact through a contact address's short
// link: it makes an invitation of its own (as Invite does; the contact,
// called name, is StateInvited) and sends it to the address, showing
// showName (which may be empty) and nothing else. When the owner accepts,
// the contact becomes connected as with any invitation.
func (c *Client) RequestContact(ctx context.Context, addressLink, name, showName string) (Contact, error) {
	l, err := queue.ParseShortLink(addressLink)
	if err != nil || l.Kind != queue.LinkAddress {
		return Contact{}, ErrBadLink
	}
	if len(showName) > MaxShowName || !utf8.ValidString(showName) {
		return Contact{}, ErrShowName
	}
	relays, err := c.Relays()
	if err != nil {
		return Contact{}, err
	}
	if len(relays) == 0 {
		return Contact{}, ErrNoRelay
	}
	if name, err = c.freeName(name); err != nil {
		return Contact{}, err
	}
	content, err := c.readShortLink(ctx, l, "")
	switch {
	case errors.Is(err, queue.AUTH):
		return Contact{}, ErrAddressGone
	case err != nil:
		return Contact{}, err
	}
	ai, err := parseAddressInfo(content)
	if err != nil {
		return Contact{}, err
	}
	sendKey, err := queue.ParsePrivateKey(ai.sendKey)
	if err != nil {
		return Contact{}, ErrLinkData
	}
	inv, addr, conn, q, name, err := c.invite(ctx, name)
	if err != nil {
		return Contact{}, err
	}
	env, err := sealRequest(ai.queue.e2eKey, inv.bytes(), showName)
	if err == nil {
		err = c.sendTo(ctx, ai.queue.relay, ai.queue.senderID, sendKey, env)
	}
	if err != nil {
		c.forgetQuietly(name)
		if errors.Is(err, queue.AUTH) {
			return Contact{}, ErrAddressGone
		}
		return Contact{}, err
	}
	c.subscribeNew(conn, q)
	now := time.Now()
	return Contact{Name: name, State: StateInvited, Created: now, Expires: now.Add(c.expiry()),
		ReceiveRelay: addr.WithoutPassword()}, nil
}

// sendTo sends body to the queue sid on relay within the relay budget.
// With private routing (Config.Routing), it goes through a forwarding
// relay (see Client.sendVia).
func (c *Client) sendTo(ctx context.Context, relay queue.Address, sid queue.ID, key *ecdh.PrivateKey, body []byte) error {
	switch priv, err := c.private(relay); {
	case err != nil:
		return err
	case priv:
		return c.sendVia(ctx, relay, sid, key, body)
	}
	rctx, cancel := context.WithTimeout(ctx, c.relayTimeout())
	defer cancel()
	rl := c.linkTo(relay, "")
	conn, err := rl.get(rctx)
	if err != nil {
		return &RelayError{relay, rl.budgetErr(rctx, err)}
	}
	if err := conn.Send(rctx, sid, key, body); err != nil {
		if errors.Is(err, queue.AUTH) {
			return err
		}
		return &RelayError{relay, err}
	}
	return nil
}

// CreateAddress creates our contact address (section 21.4): a queue on
// one of the configured relays, chosen as Invite chooses, secured with a
// key that the address shares with everyone who has its link, and link
// data on that relay. autoAccept accepts every request as it arrives.
func (c *Client) CreateAddress(ctx context.Context, autoAccept bool) (Address, error) {
	if ar, err := c.loadAddress(); err != nil {
		return Address{}, err
	} else if ar != nil {
		return Address{}, ErrAddressExists
	}
	relays, err := c.Relays()
	if err != nil {
		return Address{}, err
	}
	if len(relays) == 0 {
		return Address{}, ErrNoRelay
	}
	id := randomID(16)
	addr, conn, q, err := c.createQueue(ctx, c.candidates(relays), c.isolation(id))
	if err != nil {
		return Address{}, err
	}
	sendKey, e2e := newKey(), newKey()
	info := addressInfo{
		queue:   queueInfo{relay: addr.WithoutPassword(), senderID: q.SenderID, e2eKey: queue.PublicKey(e2e)},
		sendKey: sendKey.Bytes(),
	}
	k, data, err := queue.SealLinkData(queue.LinkAddress, info.append(nil))
	if err != nil {
		return Address{}, err
	}
	lid, _ := queue.LinkKeys(k)
	rctx, cancel := context.WithTimeout(ctx, c.relayTimeout())
	err = conn.Secure(rctx, q, queue.PublicKey(sendKey))
	if err == nil {
		err = conn.SetLink(rctx, q, lid, queue.LinkReusable, data)
	}
	cancel()
	if err != nil {
		dctx, cancel := context.WithTimeout(c.ctx, c.relayTimeout())
		conn.Delete(dctx, q)
		cancel()
		return Address{}, &RelayError{addr.WithoutPassword(), err}
	}
	rec := &addressRecord{
		ID:         id,
		Recv:       recvQueueRecord(addr, q, e2e.Bytes()),
		SendKey:    sendKey.Bytes(),
		Link:       queue.ShortLink{Relay: addr, Kind: queue.LinkAddress, Key: k}.String(),
		AutoAccept: autoAccept,
		Created:    time.Now(),
	}
	err = c.store.Update(func(tx *vault.Tx) error {
		if ar, err := addressIn(tx); err != nil {
			return err
		} else if ar != nil {
			return ErrAddressExists
		}
		return tx.Put(bucketAddress, rec.ID, marshal(rec))
	})
	if err != nil {
		return Address{}, err
	}
	c.setAddressQueue(q.RecipientID)
	c.addScope(rec.ID)
	c.subscribeNew(conn, q)
	return addressOf(rec), nil
}

func addressOf(rec *addressRecord) Address {
	a := Address{Link: rec.Link, AutoAccept: rec.AutoAccept, Created: rec.Created}
	if r, err := queue.ParseAddress(rec.Recv.Relay); err == nil {
		a.Relay = r.WithoutPassword()
	}
	return a
}

// ContactAddress returns our contact address, or ErrNoAddress.
func (c *Client) ContactAddress() (Address, error) {
	rec, err := c.loadAddress()
	if err != nil {
		return Address{}, err
	}
	if rec == nil {
		return Address{}, ErrNoAddress
	}
	return addressOf(rec), nil
}

// SetAutoAccept turns the acceptance of every request as it arrives on or
// off.
func (c *Client) SetAutoAccept(on bool) error {
	return c.store.Update(func(tx *vault.Tx) error {
		rec, err := addressIn(tx)
		if err != nil {
			return err
		}
		if rec == nil {
			return ErrNoAddress
		}
		rec.AutoAccept = on
		return tx.Put(bucketAddress, rec.ID, marshal(rec))
	})
}

// DeleteAddress deletes our contact address: its queue on the relay (DEL),
// with its link data, so that the link gives nothing and no new request
// can be made. Requests received already stay.
func (c *Client) DeleteAddress(ctx context.Context) error {
	rec, err := c.loadAddress()
	if err != nil {
		return err
	}
	if rec == nil {
		return ErrNoAddress
	}
	addr, err := queue.ParseAddress(rec.Recv.Relay)
	if err != nil {
		return err
	}
	q, err := rec.Recv.queue()
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, c.relayTimeout())
	defer cancel()
	rl := c.linkTo(addr, c.isolation(rec.ID))
	conn, err := rl.get(rctx)
	if err != nil {
		return &RelayError{addr.WithoutPassword(), rl.budgetErr(rctx, err)}
	}
	if err := conn.Delete(rctx, q); err != nil && !errors.Is(err, queue.AUTH) {
		return &RelayError{addr.WithoutPassword(), err}
	}
	if err := c.store.Update(func(tx *vault.Tx) error { return tx.Delete(bucketAddress, rec.ID) }); err != nil {
		return err
	}
	c.setAddressQueue(queue.ID{})
	return nil
}

// Requests returns the contact requests waiting, oldest first.
func (c *Client) Requests() ([]Request, error) {
	var out []Request
	err := c.store.View(func(tx *vault.Tx) error {
		return tx.ForEach(bucketRequests, nil, func(_, v []byte) error {
			var r requestRecord
			if err := unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, Request{ID: hex.EncodeToString(r.ID), Name: r.Name, Received: r.Received})
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Request) int { return a.Received.Compare(b.Received) })
	return out, err
}

func requestKey(id string) ([]byte, error) {
	k, err := hex.DecodeString(id)
	if err != nil || len(k) != requestIDSize {
		return nil, ErrNoRequest
	}
	return k, nil
}

// AcceptRequest accepts the contact request id: it accepts the invitation
// the request carries (as Accept does), and deletes the request. name is
// what we call the contact; "" takes the name the request shows if no
// contact has it, else picks one.
func (c *Client) AcceptRequest(ctx context.Context, id, name string) (Contact, error) {
	key, err := requestKey(id)
	if err != nil {
		return Contact{}, err
	}
	var r requestRecord
	err = c.store.View(func(tx *vault.Tx) error {
		v, err := tx.Get(bucketRequests, key)
		if errors.Is(err, vault.ErrNotFound) {
			return ErrNoRequest
		}
		if err != nil {
			return err
		}
		return unmarshal(v, &r)
	})
	if err != nil {
		return Contact{}, err
	}
	inv, err := parseInvitationBytes(r.Invitation)
	if err != nil {
		return Contact{}, err
	}
	if name == "" && r.Name != "" {
		if _, err := c.freeName(r.Name); err == nil {
			name = r.Name
		}
	}
	ct, err := c.Accept(ctx, inv.String(), name)
	if err == nil || errors.Is(err, ErrInvitationUsed) || errors.Is(err, ErrBadLink) {
		if derr := c.store.Update(func(tx *vault.Tx) error { return tx.Delete(bucketRequests, key) }); derr != nil && err == nil {
			err = derr
		}
	}
	return ct, err
}

// RejectRequest deletes the contact request id. The requester is told
// nothing: its invitation expires unused.
func (c *Client) RejectRequest(id string) error {
	key, err := requestKey(id)
	if err != nil {
		return err
	}
	return c.store.Update(func(tx *vault.Tx) error {
		if _, err := tx.Get(bucketRequests, key); errors.Is(err, vault.ErrNotFound) {
			return ErrNoRequest
		} else if err != nil {
			return err
		}
		return tx.Delete(bucketRequests, key)
	})
}

// addressIn returns our address record, nil if there is none.
func addressIn(tx *vault.Tx) (*addressRecord, error) {
	var rec *addressRecord
	err := tx.ForEach(bucketAddress, nil, func(_, v []byte) error {
		rec = new(addressRecord)
		return unmarshal(v, rec)
	})
	return rec, err
}

func (c *Client) loadAddress() (*addressRecord, error) {
	var rec *addressRecord
	err := c.store.View(func(tx *vault.Tx) error {
		var err error
		rec, err = addressIn(tx)
		return err
	})
	return rec, err
}

// setAddressQueue records the recipient ID of our address queue (zero for
// none), which receive checks first.
func (c *Client) setAddressQueue(rid queue.ID) {
	c.mu.Lock()
	c.addrRID, c.addrKnown = rid, true
	c.mu.Unlock()
}

// isAddressQueue reports whether rid is our address queue.
func (c *Client) isAddressQueue(rid queue.ID) bool {
	c.mu.Lock()
	known, got := c.addrKnown, c.addrRID
	c.mu.Unlock()
	if !known {
		rec, err := c.loadAddress()
		if err != nil {
			return false
		}
		got = queue.ID{}
		if rec != nil {
			copy(got[:], rec.Recv.RecipientID)
		}
		c.setAddressQueue(got)
	}
	return got != queue.ID{} && got == rid
}

// recvRecords returns the contacts, and our address as a contact record of
// its queue, for the code that connects and subscribes to every queue we
// receive on.
func (c *Client) recvRecords() ([]*contactRecord, error) {
	recs, err := c.loadContacts()
	if err != nil {
		return nil, err
	}
	ar, err := c.loadAddress()
	if err != nil {
		return nil, err
	}
	if ar != nil {
		recs = append(recs, &contactRecord{ID: ar.ID, Name: "(contact address)", State: StateConnected, Recv: ar.Recv})
	}
	return recs, nil
}

// receiveRequest handles a message delivered to our address queue: a
// contact request is stored and reported (EventRequest), and accepted at
// once with auto-accept; anything else is dropped. It reports whether to
// acknowledge it, on queue q.
func (c *Client) receiveRequest(ev link.Event) (q link.Queue, ack bool) {
	var (
		req  *requestRecord
		auto bool
	)
	err := c.store.Update(func(tx *vault.Tx) error {
		rec, err := addressIn(tx)
		if err != nil {
			return err
		}
		if rec == nil || !bytes.Equal(rec.Recv.RecipientID, ev.RecipientID[:]) {
			return ErrNoAddress
		}
		if q, err = rec.Recv.queue(); err != nil {
			return err
		}
		for _, id := range rec.Recent {
			if bytes.Equal(id, ev.Message.ID[:]) {
				return nil // processed before; the ACK was lost
			}
		}
		rec.Recent = append(rec.Recent, bytes.Clone(ev.Message.ID[:]))
		if len(rec.Recent) > recentIDs {
			rec.Recent = rec.Recent[len(rec.Recent)-recentIDs:]
		}
		if err := tx.Put(bucketAddress, rec.ID, marshal(rec)); err != nil {
			return err
		}
		if ev.Err != nil {
			return nil // does not open: dropped
		}
		invBytes, name, err := openRequest(ev.Message.Body, rec.Recv.E2EKey)
		if err != nil {
			c.cfg.Logger.Debug("a message to the contact address that is not a request")
			return nil
		}
		if _, err := parseInvitationBytes(invBytes); err != nil {
			c.cfg.Logger.Debug("a contact request with an invalid invitation")
			return nil
		}
		r := &requestRecord{Name: name, Invitation: bytes.Clone(invBytes), Received: time.Now(), Auto: rec.AutoAccept}
		for {
			r.ID = randomID(requestIDSize)
			if _, err := tx.Get(bucketRequests, r.ID); errors.Is(err, vault.ErrNotFound) {
				break
			}
		}
		if err := tx.Put(bucketRequests, r.ID, marshal(r)); err != nil {
			return err
		}
		req, auto = r, rec.AutoAccept
		return c.pushEvent(tx, Event{Kind: EventRequest, Contact: name, Text: hex.EncodeToString(r.ID), Time: r.Received})
	})
	switch {
	case err == nil:
	case errors.Is(err, ErrNoAddress):
		return q, false
	default:
		c.cfg.Logger.Error("processing a contact request", "err", err)
		return q, false // the relay delivers it again
	}
	notify(c.wakeEvents)
	if req != nil && auto {
		c.wg.Go(func() { c.autoAccept(hex.EncodeToString(req.ID)) })
	}
	return q, true
}

// autoAccept accepts the request id, as auto-accept does, logging a
// failure.
func (c *Client) autoAccept(id string) {
	ctx, cancel := context.WithTimeout(c.ctx, 4*c.relayTimeout())
	defer cancel()
	if _, err := c.AcceptRequest(ctx, id, ""); err != nil && !errors.Is(err, ErrNoRequest) {
		c.cfg.Logger.Warn("accepting a contact request", "err", err)
	}
}

// acceptPending accepts, one after the other, the requests that came with
// auto-accept on and are still waiting (their acceptance was cut short by
// Close), if auto-accept is still on.
func (c *Client) acceptPending() {
	ar, err := c.loadAddress()
	if err != nil || ar == nil || !ar.AutoAccept {
		return
	}
	var ids []string
	err = c.store.View(func(tx *vault.Tx) error {
		return tx.ForEach(bucketRequests, nil, func(_, v []byte) error {
			var r requestRecord
			if err := unmarshal(v, &r); err != nil {
				return err
			}
			if r.Auto {
				ids = append(ids, hex.EncodeToString(r.ID))
			}
			return nil
		})
	})
	if err != nil {
		c.cfg.Logger.Error("reading the contact requests", "err", err)
		return
	}
	for _, id := range ids {
		if c.ctx.Err() != nil {
			return
		}
		c.autoAccept(id)
	}
}
