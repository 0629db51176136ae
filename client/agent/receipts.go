package agent

import (
	"context"

	"github.com/hushrelay/hush/client"
)

// callReceipts runs the methods of delivery receipts.
func (sc *serverConn) callReceipts(req Request) result {
	cl := sc.s.cl
	if req.Method == MethodReceipts {
		on, err := cl.Receipts()
		if err != nil {
			return result{err: err}
		}
		return result{value: ReceiptsResult{on}}
	}
	var p SetReceiptsParams
	if err := params(req, &p); err != nil {
		return result{err: err}
	}
	mode := client.ReceiptMode(p.Mode)
	if mode == "default" {
		mode = client.ReceiptsDefault
	}
	var err error
	switch {
	case p.Contact != "":
		err = cl.SetContactReceipts(p.Contact, mode)
	case mode == client.ReceiptsOn, mode == client.ReceiptsOff:
		err = cl.SetReceipts(mode == client.ReceiptsOn)
	default:
		err = client.ErrReceiptMode
	}
	if err != nil {
		return result{err: err}
	}
	return result{value: struct{}{}}
}

// Receipts reports whether delivery receipts are sent to the contacts
// without a setting of their own (client.Client.Receipts).
func (c *Conn) Receipts(ctx context.Context) (bool, error) {
	var r ReceiptsResult
	err := c.Call(ctx, MethodReceipts, nil, &r)
	return r.On, err
}

// SetReceipts turns delivery receipts on or off globally
// (client.Client.SetReceipts).
func (c *Conn) SetReceipts(ctx context.Context, on bool) error {
	mode := client.ReceiptsOff
	if on {
		mode = client.ReceiptsOn
	}
	return c.Call(ctx, MethodSetReceipts, SetReceiptsParams{Mode: string(mode)}, nil)
}

// SetContactReceipts sets the contact's own setting of delivery receipts
// (client.Client.SetContactReceipts); ReceiptsDefault is sent as
// "default".
func (c *Conn) SetContactReceipts(ctx context.Context, contact string, mode client.ReceiptMode) error {
	m := string(mode)
	if mode == client.ReceiptsDefault {
		m = "default"
	}
	return c.Call(ctx, MethodSetReceipts, SetReceiptsParams{Contact: contact, Mode: m}, nil)
}
