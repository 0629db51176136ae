package agent

import (
	"context"
	"time"

	"github.com/hushrelay/hush/client"
)

// callAddress runs the methods of contact addresses and their requests.
func (sc *serverConn) callAddress(req Request) result {
	cl := sc.s.cl
	switch req.Method {
	case MethodCreateAddress:
		var p CreateAddressParams
		ctx, cancel, err := sc.timedParams(req, &p, &p.Timeout, DefaultRelayTimeout, nil)
		if err != nil {
			return result{err: err}
		}
		defer cancel()
		a, err := cl.CreateAddress(ctx, p.AutoAccept)
		if err != nil {
			return result{err: err}
		}
		return result{value: AddressResult{addressJSON(a)}}
	case MethodAddress:
		a, err := cl.ContactAddress()
		if err != nil {
			return result{err: err}
		}
		return result{value: AddressResult{addressJSON(a)}}
	case MethodAutoAccept:
		var p AutoAcceptParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		if err := cl.SetAutoAccept(p.On); err != nil {
			return result{err: err}
		}
		return result{value: struct{}{}}
	case MethodDeleteAddress:
		var p DeleteAddressParams
		ctx, cancel, err := sc.timedParams(req, &p, &p.Timeout, DefaultRelayTimeout, nil)
		if err != nil {
			return result{err: err}
		}
		defer cancel()
		if err := cl.DeleteAddress(ctx); err != nil {
			return result{err: err}
		}
		return result{value: struct{}{}}
	case MethodRequests:
		list, err := cl.Requests()
		if err != nil {
			return result{err: err}
		}
		out := RequestsResult{Requests: make([]RequestJSON, 0, len(list))}
		for _, r := range list {
			out.Requests = append(out.Requests, RequestJSON{r.ID, r.Name, formatTime(r.Received)})
		}
		return result{value: out}
	case MethodAcceptRequest:
		var p AcceptRequestParams
		ctx, cancel, err := sc.timedParams(req, &p, &p.Timeout, DefaultRelayTimeout, func() error { return required("id", p.ID) })
		if err != nil {
			return result{err: err}
		}
		defer cancel()
		ct, err := cl.AcceptRequest(ctx, p.ID, p.Name)
		if err != nil {
			return result{err: err}
		}
		return result{value: AcceptResult{contactJSON(ct)}}
	case MethodRejectRequest:
		var p RejectRequestParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		if p.ID == "" {
			return result{err: missing("id")}
		}
		if err := cl.RejectRequest(p.ID); err != nil {
			return result{err: err}
		}
		return result{value: struct{}{}}
	}
	return result{err: &Error{Code: CodeMethodNotFound, Message: "method not found: " + req.Method}}
}

// InviteShort makes an invitation with a short link
// (client.Client.InviteShort); the agent tries for at most timeout (0:
// DefaultRelayTimeout).
func (c *Conn) InviteShort(ctx context.Context, name string, timeout time.Duration) (string, error) {
	var r InviteResult
	err := c.Call(ctx, MethodInvite, InviteParams{Name: name, Timeout: seconds(timeout), Short: true}, &r)
	return r.Link, err
}

// RequestContact asks for a contact through a contact address's short
// link, showing show (client.Client.RequestContact); the agent tries for
// at most timeout (0: DefaultRelayTimeout).
func (c *Conn) RequestContact(ctx context.Context, link, name, show string, timeout time.Duration) (client.Contact, error) {
	var r AcceptResult
	err := c.Call(ctx, MethodAccept, AcceptParams{Link: link, Name: name, Timeout: seconds(timeout), Show: show}, &r)
	return r.Contact.contact(), err
}

// CreateAddress creates our contact address (client.Client.CreateAddress);
// the agent tries for at most timeout (0: DefaultRelayTimeout).
func (c *Conn) CreateAddress(ctx context.Context, autoAccept bool, timeout time.Duration) (client.Address, error) {
	var r AddressResult
	err := c.Call(ctx, MethodCreateAddress, CreateAddressParams{autoAccept, seconds(timeout)}, &r)
	return r.Address.address(), err
}

// ContactAddress returns our contact address (client.Client.ContactAddress).
func (c *Conn) ContactAddress(ctx context.Context) (client.Address, error) {
	var r AddressResult
	err := c.Call(ctx, MethodAddress, nil, &r)
	return r.Address.address(), err
}

// SetAutoAccept is client.Client.SetAutoAccept.
func (c *Conn) SetAutoAccept(ctx context.Context, on bool) error {
	return c.Call(ctx, MethodAutoAccept, AutoAcceptParams{on}, nil)
}

// DeleteAddress deletes our contact address (client.Client.DeleteAddress);
// the agent tries for at most timeout (0: DefaultRelayTimeout).
func (c *Conn) DeleteAddress(ctx context.Context, timeout time.Duration) error {
	return c.Call(ctx, MethodDeleteAddress, DeleteAddressParams{seconds(timeout)}, nil)
}

// Requests returns the contact requests waiting (client.Client.Requests).
func (c *Conn) Requests(ctx context.Context) ([]client.Request, error) {
	var r RequestsResult
	if err := c.Call(ctx, MethodRequests, nil, &r); err != nil {
		return nil, err
	}
	out := make([]client.Request, 0, len(r.Requests))
	for _, j := range r.Requests {
		out = append(out, client.Request{ID: j.ID, Name: j.Name, Received: parseTime(j.Received)})
	}
	return out, nil
}

// AcceptRequest accepts a contact request (client.Client.AcceptRequest);
// the agent tries for at most timeout (0: DefaultRelayTimeout).
func (c *Conn) AcceptRequest(ctx context.Context, id, name string, timeout time.Duration) (client.Contact, error) {
	var r AcceptResult
	err := c.Call(ctx, MethodAcceptRequest, AcceptRequestParams{id, name, seconds(timeout)}, &r)
	return r.Contact.contact(), err
}

// RejectRequest deletes a contact request (client.Client.RejectRequest).
func (c *Conn) RejectRequest(ctx context.Context, id string) error {
	return c.Call(ctx, MethodRejectRequest, RejectRequestParams{id}, nil)
}
