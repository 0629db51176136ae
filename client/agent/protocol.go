package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// MaxLine is the longest request line, in bytes (with its newline). A
// longer request ends the connection after a parse error.
const MaxLine = 256 << 10

// maxAnswerLine is the longest line a Conn reads from the agent: answers
// grow with the number of contacts (about 200 bytes each).
const maxAnswerLine = 64 << 20

// Window is how many event notifications a subscription may have
// unacknowledged: the agent sends no more until the subscriber acks.
const Window = 64

// Methods of the API (see docs/agent.md).
const (
	MethodVersion     = "version"
	MethodAddRelay    = "addRelay"
	MethodListRelays  = "listRelays"
	MethodInvite      = "invite"
	MethodAccept      = "accept"
	MethodContacts    = "listContacts"
	MethodSend        = "send"
	MethodFlush       = "flush"
	MethodSubscribe   = "subscribeReceive"
	MethodUnsubscribe = "unsubscribeReceive"
	MethodAck         = "ack"
	MethodTaken       = "ackTaken"
	MethodForget      = "forgetContact"
	MethodRename      = "renameContact"
	MethodRemoveRelay = "removeRelay"
	MethodRelayStatus = "relayStatus"
	// Contact addresses and their requests (PROTOCOL.md section 21.4).
	MethodCreateAddress = "createAddress"
	MethodAddress       = "contactAddress"
	MethodAutoAccept    = "setAutoAccept"
	MethodDeleteAddress = "deleteAddress"
	MethodRequests      = "listRequests"
	MethodAcceptRequest = "acceptRequest"
	MethodRejectRequest = "rejectRequest"
	// MethodRotate starts the rotation of a contact's queue (PROTOCOL.md
	// section 19.11).
	MethodRotate = "rotateContact"
	// Delivery receipts (PROTOCOL.md section 19.12).
	MethodReceipts    = "receipts"
	MethodSetReceipts = "setReceipts"
	// NotificationReceive is the method of the agent's event notifications.
	NotificationReceive = "receive"
)

// Error codes: JSON-RPC's own, then hush's (each names the client error
// it stands for).
const (
	CodeParse          = -32700 // the line is not JSON
	CodeInvalidRequest = -32600 // not a JSON-RPC 2.0 request object
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603

	CodeFailed         = 1  // any other failure; the message says why
	CodeTimeout        = 2  // the timeout passed (a relay could not be reached)
	CodeNoRelay        = 3  // client.ErrNoRelay
	CodeNameTaken      = 4  // client.ErrNameTaken
	CodeNoContact      = 5  // client.ErrNoContact
	CodeNotConnected   = 6  // client.ErrNotConnected
	CodeBadLink        = 7  // client.ErrBadLink
	CodeOldLink        = 8  // client.ErrOldLink
	CodeInvitationUsed = 9  // client.ErrInvitationUsed
	CodeTooLong        = 10 // client.ErrTooLong
	CodeClosing        = 11 // the agent is shutting down
	CodeContactGone    = 12 // client.ErrContactGone
	CodeBadName        = 13 // client.ErrBadName

	CodeRelaysUnreachable = 14 // client.ErrRelaysUnreachable
	CodeInviterRelay      = 15 // client.ErrInviterRelay
	CodeWrongFingerprint  = 16 // link.ErrWrongFingerprint
	CodeWrongPassword     = 17 // link.ErrWrongPassword
	CodeRelayTLS          = 18 // link.ErrTLS
	CodeUnreachable       = 19 // link.ErrUnreachable
	CodeRelayConflict     = 20 // client.ErrRelayConflict
	CodeNoSuchRelay       = 21 // client.ErrNoSuchRelay
	CodeRotating          = 22 // client.ErrRotating
	CodeNoOtherRelay      = 23 // client.ErrNoOtherRelay

	// Short links and contact addresses.
	CodeLinkData      = 30 // client.ErrLinkData
	CodeAddressGone   = 31 // client.ErrAddressGone
	CodeNoAddress     = 32 // client.ErrNoAddress
	CodeAddressExists = 33 // client.ErrAddressExists
	CodeNoRequest     = 34 // client.ErrNoRequest
	CodeShowName      = 35 // client.ErrShowName
	CodeReceiptMode   = 36 // client.ErrReceiptMode
)

// codeErrors maps hush's codes to the errors they stand for, most
// specific first.
var codeErrors = []struct {
	code int
	err  error
}{
	{CodeOldLink, client.ErrOldLink},
	{CodeBadLink, client.ErrBadLink},
	{CodeNoRelay, client.ErrNoRelay},
	{CodeNameTaken, client.ErrNameTaken},
	{CodeNoContact, client.ErrNoContact},
	{CodeNotConnected, client.ErrNotConnected},
	{CodeInvitationUsed, client.ErrInvitationUsed},
	{CodeTooLong, client.ErrTooLong},
	{CodeLinkData, client.ErrLinkData},
	{CodeAddressGone, client.ErrAddressGone},
	{CodeNoAddress, client.ErrNoAddress},
	{CodeAddressExists, client.ErrAddressExists},
	{CodeNoRequest, client.ErrNoRequest},
	{CodeShowName, client.ErrShowName},
	{CodeReceiptMode, client.ErrReceiptMode},
	// A relay's failure: why, when it refused, before that it timed out
	// or could not be reached.
	{CodeInviterRelay, client.ErrInviterRelay},
	{CodeWrongFingerprint, link.ErrWrongFingerprint},
	{CodeWrongPassword, link.ErrWrongPassword},
	{CodeRelayTLS, link.ErrTLS},
	{CodeRelayConflict, client.ErrRelayConflict},
	{CodeNoSuchRelay, client.ErrNoSuchRelay},
	{CodeTimeout, context.DeadlineExceeded},
	{CodeClosing, ErrClosed},
	{CodeContactGone, client.ErrContactGone},
	{CodeBadName, client.ErrBadName},
	{CodeRotating, client.ErrRotating},
	{CodeNoOtherRelay, client.ErrNoOtherRelay},
	{CodeUnreachable, link.ErrUnreachable},
	{CodeRelaysUnreachable, client.ErrRelaysUnreachable},
}

// Error is a JSON-RPC error object. Those of hush's codes unwrap to the
// client error they stand for (CodeTimeout to context.DeadlineExceeded),
// so errors.Is works across the socket.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the error that e's code stands for, or nil.
func (e *Error) Unwrap() error {
	for _, ce := range codeErrors {
		if ce.code == e.Code {
			return ce.err
		}
	}
	return nil
}

// errorOf returns the JSON-RPC error for a method's error.
func errorOf(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, ce := range codeErrors {
		if errors.Is(err, ce.err) {
			return &Error{Code: ce.code, Message: err.Error()}
		}
	}
	return &Error{Code: CodeFailed, Message: err.Error()}
}

// Request is one JSON-RPC 2.0 request.
type Request struct {
	// ID is the request's id as it was sent (a string, a number or null),
	// nil for a notification, which gets no response.
	ID json.RawMessage
	// Method is the method's name; never empty.
	Method string
	// Params is the params object, or nil when there is none.
	Params json.RawMessage
}

// ParseRequest parses one line (without its newline) as a JSON-RPC 2.0
// request. Only objects are requests (no batches); params must be an
// object (named parameters), absent or null; the id a string, a number
// or null; members other than jsonrpc, id, method and params are
// ignored. On error it returns the Error to answer with, and the request
// with whatever id it could read.
func ParseRequest(line []byte) (Request, *Error) {
	var req Request
	line = bytes.TrimSpace(line)
	if !json.Valid(line) {
		return req, &Error{Code: CodeParse, Message: "parse error: not JSON"}
	}
	if len(line) == 0 || line[0] != '{' {
		msg := "invalid request: not a JSON object"
		if line[0] == '[' {
			msg = "invalid request: batches are not supported"
		}
		return req, &Error{Code: CodeInvalidRequest, Message: msg}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return req, &Error{Code: CodeParse, Message: "parse error: " + err.Error()}
	}
	if id, ok := m["id"]; ok {
		switch {
		case len(id) == 0:
		case id[0] == '"', id[0] == '-', id[0] >= '0' && id[0] <= '9', string(id) == "null":
			req.ID = compact(id)
		default:
			return req, &Error{Code: CodeInvalidRequest, Message: "invalid request: id must be a string, a number or null"}
		}
	}
	var version string
	if err := json.Unmarshal(m["jsonrpc"], &version); err != nil || version != "2.0" {
		return req, &Error{Code: CodeInvalidRequest, Message: `invalid request: jsonrpc must be "2.0"`}
	}
	if err := json.Unmarshal(m["method"], &req.Method); err != nil || req.Method == "" {
		return req, &Error{Code: CodeInvalidRequest, Message: "invalid request: method must be a non-empty string"}
	}
	switch p := m["params"]; {
	case len(p) == 0, string(p) == "null":
	case p[0] == '{':
		req.Params = compact(p)
	default:
		return req, &Error{Code: CodeInvalidParams, Message: "invalid params: params must be an object"}
	}
	return req, nil
}

func compact(b []byte) json.RawMessage {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return bytes.Clone(b) // already checked valid
	}
	return out.Bytes()
}

// AppendJSON appends r as one line of JSON, without the newline.
func (r Request) AppendJSON(b []byte) []byte {
	type wire struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id,omitempty"`
		Method  string          `json:"method"`
		Params  json.RawMessage `json:"params,omitempty"`
	}
	return append(b, mustJSON(wire{"2.0", r.ID, r.Method, r.Params})...)
}

// mustJSON encodes v, leaving <, > and & as they are; v is plain data.
func mustJSON(v any) []byte {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// response is a JSON-RPC response; exactly one of Result and Error is set.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// notification is a JSON-RPC notification from the agent.
type notification struct {
	JSONRPC string      `json:"jsonrpc"`
	Method  string      `json:"method"`
	Params  receiveJSON `json:"params"`
}

// receiveJSON is the params of a receive notification.
type receiveJSON struct {
	Subscription uint64    `json:"subscription"`
	Result       EventJSON `json:"result"`
}

// TimeFormat is the format of times in the API: RFC 3339 in UTC with
// milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeFormat)
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// EventJSON is an event as the API shows it, the same as "hush --json
// receive" prints it, with its ID.
type EventJSON struct {
	ID      uint64 `json:"id"`
	Event   string `json:"event"` // message, connected, sent, delivered, problem, relay-down, relay-up, request or rotated
	Contact string `json:"contact"`
	Relay   string `json:"relay,omitempty"`
	Text    string `json:"text,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Time    string `json:"time,omitempty"`
	Error   string `json:"error,omitempty"`
	// Request is the ID of a contact request (event request), and Name
	// the name it shows, maybe none; Contact is then empty.
	Request string `json:"request,omitempty"`
	Name    string `json:"name,omitempty"`
}

func eventJSON(ev client.StoredEvent) EventJSON {
	j := EventJSON{ID: ev.ID, Event: ev.Kind.String(), Contact: ev.Contact, Relay: ev.Relay, Text: ev.Text, Seq: ev.Seq, Time: formatTime(ev.Time)}
	if ev.Kind == client.EventRequest {
		j.Contact, j.Text, j.Request, j.Name = "", "", ev.Text, ev.Contact
	}
	if ev.Problem != nil {
		j.Error = ev.Problem.Error()
	}
	return j
}

var eventKinds = map[string]client.EventKind{
	"message":    client.EventMessage,
	"connected":  client.EventConnected,
	"sent":       client.EventSent,
	"problem":    client.EventProblem,
	"relay-down": client.EventRelayDown,
	"relay-up":   client.EventRelayUp,
	"request":    client.EventRequest,
	"rotated":    client.EventRotated,
	"delivered":  client.EventDelivered,
}

// Event is an event received from the agent: a client event and its ID,
// which Ack takes.
type Event struct {
	ID uint64
	client.Event
}

func (j EventJSON) event() Event {
	ev := Event{ID: j.ID, Event: client.Event{Kind: eventKinds[j.Event], Contact: j.Contact, Relay: j.Relay, Text: j.Text, Seq: j.Seq, Time: parseTime(j.Time)}}
	if ev.Kind == client.EventRequest {
		// As the client reports it: the name shown, and the ID as Text.
		ev.Contact, ev.Text = j.Name, j.Request
	}
	if j.Error != "" {
		ev.Problem = errors.New(j.Error)
	}
	return ev
}

// ContactJSON is a contact as the API shows it, the same as "hush --json
// contacts" prints it.
type ContactJSON struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Created     string `json:"created"`
	SharedRelay bool   `json:"shared_relay"`
	Outbox      int    `json:"outbox"`
	// Expires is when an unfinished handshake expires; absent for others.
	Expires string `json:"expires,omitempty"`
	// ReceiveRelay and SendRelay are the relays of the contact's queues,
	// without passwords; SendRelay is absent until the contact confirmed.
	ReceiveRelay string `json:"receive_relay"`
	SendRelay    string `json:"send_relay,omitempty"`
	// Rotation is where the rotation of the contact's receiving queue is
	// (client.RotationState); absent when none is under way.
	Rotation string `json:"rotation,omitempty"`
	// Receipts is "on" or "off" when the contact has its own setting of
	// delivery receipts, absent when it follows the global one.
	Receipts string `json:"receipts,omitempty"`
}

func contactJSON(ct client.Contact) ContactJSON {
	j := ContactJSON{Name: ct.Name, State: string(ct.State), Created: formatTime(ct.Created), SharedRelay: ct.SharedRelay, Outbox: ct.Outbox,
		Expires: formatTime(ct.Expires), ReceiveRelay: ct.ReceiveRelay.String(), Rotation: string(ct.Rotation), Receipts: string(ct.Receipts)}
	if ct.SendRelay.Host != "" {
		j.SendRelay = ct.SendRelay.String()
	}
	return j
}

func (j ContactJSON) contact() client.Contact {
	ct := client.Contact{Name: j.Name, State: client.ContactState(j.State), Created: parseTime(j.Created), SharedRelay: j.SharedRelay,
		Outbox: j.Outbox, Expires: parseTime(j.Expires), Rotation: client.RotationState(j.Rotation), Receipts: client.ReceiptMode(j.Receipts)}
	ct.ReceiveRelay, _ = queue.ParseAddress(j.ReceiveRelay)
	ct.SendRelay, _ = queue.ParseAddress(j.SendRelay)
	return ct
}

// RelayStatusJSON is client.RelayStatus: a relay's address without the
// password, its state (connecting, up, down or refused) and why.
type RelayStatusJSON struct {
	Relay string `json:"relay"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// RelayJSON is a configured relay: its address without the password, and
// whether it has one.
type RelayJSON struct {
	Address  string `json:"address"`
	Password bool   `json:"password"`
}

// Params and results of the methods. A timeout is in seconds; zero means
// the method's default.
type (
	VersionResult struct {
		Version string `json:"version"`
	}
	AddRelayParams struct {
		Address string `json:"address"`
		// Check connects to the relay first (client.CheckRelay), within
		// Timeout, and adds it only if it works.
		Check   bool    `json:"check,omitempty"`
		Timeout float64 `json:"timeout,omitempty"`
	}
	AddRelayResult struct {
		Added   string `json:"added"`
		Relays  int    `json:"relays"`
		Checked bool   `json:"checked"`
	}
	RemoveRelayParams struct {
		// Fingerprint is the relay's fingerprint, in full.
		Fingerprint string `json:"fingerprint"`
		// Move moves every contact off the relay first
		// (client.Client.RetireRelay): with Wait, the relay is removed
		// once all have moved, within Timeout (default
		// DefaultRetireTimeout), and kept otherwise; without, at once.
		Move    bool    `json:"move,omitempty"`
		Wait    bool    `json:"wait,omitempty"`
		Timeout float64 `json:"timeout,omitempty"`
	}
	RemoveRelayResult struct {
		Removed string `json:"removed"`
		Relays  int    `json:"relays"`
		// Contacts are those that still have a queue on the relay.
		Contacts []string `json:"contacts"`
		// With Move: the contacts whose queue on the relay is being moved,
		// those not moved yet, those asked to move theirs, and why the
		// rotation of some could not start (client.RetireReport).
		Moving  []string          `json:"moving,omitempty"`
		Pending []string          `json:"pending,omitempty"`
		Asked   []string          `json:"asked,omitempty"`
		Failed  map[string]string `json:"failed,omitempty"`
		// Kept: the relay is still configured, because contacts had not
		// moved within the timeout.
		Kept bool `json:"kept,omitempty"`
	}
	RelayStatusResult struct {
		Relays []RelayStatusJSON `json:"relays"`
	}
	ListRelaysResult struct {
		Relays []RelayJSON `json:"relays"`
	}
	InviteParams struct {
		Name    string  `json:"name,omitempty"`
		Timeout float64 `json:"timeout,omitempty"`
		// Short makes a short link (client.Client.InviteShort).
		Short bool `json:"short,omitempty"`
	}
	InviteResult struct {
		Link string `json:"link"`
	}
	AcceptParams struct {
		Link    string  `json:"link"`
		Name    string  `json:"name,omitempty"`
		Timeout float64 `json:"timeout,omitempty"`
		// Show is the name to show the owner of a contact address
		// (client.Client.RequestContact); only for an address's link.
		Show string `json:"show,omitempty"`
	}
	AcceptResult struct {
		Contact ContactJSON `json:"contact"`
	}
	ContactsResult struct {
		Contacts []ContactJSON `json:"contacts"`
	}
	SendParams struct {
		Contact string `json:"contact"`
		Text    string `json:"text"`
	}
	SendResult struct {
		Seq uint64 `json:"seq"`
	}
	FlushParams struct {
		Timeout float64 `json:"timeout,omitempty"`
	}
	FlushResult struct {
		Flushed bool `json:"flushed"`
	}
	SubscribeParams struct {
		Contact string `json:"contact,omitempty"`
	}
	SubscribeResult struct {
		Subscription uint64 `json:"subscription"`
	}
	UnsubscribeParams struct {
		Subscription uint64 `json:"subscription"`
	}
	AckParams struct {
		ID uint64 `json:"id"`
		// Token, optional, names the ack for a later ackTaken: a random
		// string of the consumer's, at most client.MaxTakeToken bytes.
		Token string `json:"token,omitempty"`
	}
	AckResult struct {
		Removed bool `json:"removed"`
	}
	TakenParams struct {
		ID    uint64 `json:"id"`
		Token string `json:"token"`
	}
	TakenResult struct {
		Taken bool `json:"taken"`
	}
	ForgetParams struct {
		Contact string  `json:"contact"`
		Timeout float64 `json:"timeout,omitempty"`
	}
	RenameParams struct {
		Contact string `json:"contact"`
		Name    string `json:"name"`
	}
	CreateAddressParams struct {
		AutoAccept bool    `json:"auto_accept,omitempty"`
		Timeout    float64 `json:"timeout,omitempty"`
	}
	AddressResult struct {
		Address AddressJSON `json:"address"`
	}
	AutoAcceptParams struct {
		On bool `json:"on"`
	}
	DeleteAddressParams struct {
		Timeout float64 `json:"timeout,omitempty"`
	}
	RequestsResult struct {
		Requests []RequestJSON `json:"requests"`
	}
	AcceptRequestParams struct {
		ID      string  `json:"id"`
		Name    string  `json:"name,omitempty"`
		Timeout float64 `json:"timeout,omitempty"`
	}
	RejectRequestParams struct {
		ID string `json:"id"`
	}
	RotateParams struct {
		Contact string  `json:"contact"`
		Timeout float64 `json:"timeout,omitempty"`
	}
	ReceiptsResult struct {
		// On is the global setting: receipts are sent to the contacts
		// without one of their own.
		On bool `json:"on"`
	}
	SetReceiptsParams struct {
		// Contact is the contact whose setting changes; absent: the
		// global setting.
		Contact string `json:"contact,omitempty"`
		// Mode is "on" or "off", or for a contact "default" (follow the
		// global setting).
		Mode string `json:"mode"`
	}
)

// AddressJSON is our contact address (client.Address) as the API shows
// it, the same as "hush --json address show" prints it.
type AddressJSON struct {
	Link       string `json:"link"`
	AutoAccept bool   `json:"auto_accept"`
	Created    string `json:"created"`
	// Relay is the relay of the address queue, without its password.
	Relay string `json:"relay"`
}

func addressJSON(a client.Address) AddressJSON {
	return AddressJSON{a.Link, a.AutoAccept, formatTime(a.Created), a.Relay.String()}
}

func (j AddressJSON) address() client.Address {
	a := client.Address{Link: j.Link, AutoAccept: j.AutoAccept, Created: parseTime(j.Created)}
	a.Relay, _ = queue.ParseAddress(j.Relay)
	return a
}

// RequestJSON is a contact request (client.Request) as the API shows it,
// the same as "hush --json requests" prints it: its ID, the name it shows
// (maybe empty) and when it arrived.
type RequestJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Received string `json:"received"`
}

// Default timeouts of the methods that take one.
const (
	DefaultRelayTimeout = 30 * time.Second // invite, accept, forgetContact, rotateContact
	DefaultFlushTimeout = 10 * time.Second // flush
	DefaultCheckTimeout = 15 * time.Second // addRelay with check
	// DefaultRetireTimeout is removeRelay's with move and wait.
	DefaultRetireTimeout = 2 * time.Minute
	maxTimeout           = 24 * time.Hour
)

func timeout(seconds float64, def time.Duration) (time.Duration, error) {
	switch {
	case seconds == 0:
		return def, nil
	case seconds < 0 || seconds > maxTimeout.Seconds():
		return 0, &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("invalid params: timeout %v not in (0, %v] seconds", seconds, maxTimeout.Seconds())}
	}
	return time.Duration(seconds * float64(time.Second)), nil
}
