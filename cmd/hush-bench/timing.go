//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"text/tabwriter"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/queue"
)

// The timing scenario measures what PROTOCOL.md section 8 promises: a
// command naming an unknown ID costs the relay the same work as one naming
// a live queue with a wrong key, so that answer times do not tell whether
// an ID exists. For every command that names a queue it sends, alternately,
// the command for an unknown ID and for a live queue (authorized by a key
// that is not the queue's, so that both are answered ERR AUTH), one at a
// time on one session, and prints the median answer time of each and
// their ratio. It talks the protocol itself (it does not use the client
// library), so that it controls every byte of the commands.

type timingOptions struct {
	commonOptions
	rounds int
	queues int
}

// timingRow is one command's figures.
type timingRow struct {
	Command   string  `json:"command"`
	UnknownUs float64 `json:"unknown_p50_us"`
	KnownUs   float64 `json:"known_p50_us"`
	Ratio     float64 `json:"ratio"` // known / unknown
}

type timingResult struct {
	Transport string      `json:"transport"`
	Rounds    int         `json:"rounds"`
	Commands  []timingRow `json:"commands"`
}

func runTimingCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &timingOptions{}
	fs := flag.NewFlagSet("hush-bench timing", flag.ContinueOnError)
	addCommonFlags(fs, &o.commonOptions)
	fs.IntVar(&o.rounds, "rounds", 500, "commands of each kind (unknown ID, live queue) per command")
	fs.IntVar(&o.queues, "queues", 64, "live queues to name, in turn")
	if err := parseFlags(fs, &o.commonOptions, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.rounds < 1 || o.queues < 1 {
		return usageError{"--rounds and --queues must be at least 1"}
	}
	res, err := runTiming(ctx, o)
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "answer times over %s, %d commands of each kind, one at a time (median):\n", res.Transport, res.Rounds)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "command\tunknown ID\tlive queue\tratio\t")
	for _, r := range res.Commands {
		fmt.Fprintf(tw, "%s\t%.0f µs\t%.0f µs\t%.2f\t\n", r.Command, r.UnknownUs, r.KnownUs, r.Ratio)
	}
	return tw.Flush()
}

func runTiming(ctx context.Context, o *timingOptions) (*timingResult, error) {
	target, err := startTarget(ctx, &o.commonOptions, 0, 0)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	w, err := dialWire(ctx, target.addr, o.transport)
	if err != nil {
		return nil, err
	}
	defer func() { w.close() }()

	// Live queues, secured, each holding a message (so that GET and ACK
	// would have something to find).
	type live struct {
		rid, sid queue.ID
	}
	queues := make([]live, o.queues)
	o.progressf("creating %d queues", o.queues)
	for i := range queues {
		rk, _ := queue.GenerateKey()
		dh, _ := queue.GenerateKey()
		sk, _ := queue.GenerateKey()
		c, err := w.do(rk, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(rk), RecipientDHKey: queue.PublicKey(dh), Password: []byte(target.addr.Password)})
		if err != nil {
			return nil, err
		}
		if c.Tag != queue.TagIDS {
			return nil, fmt.Errorf("NEW: %v %v", c.Tag, c.Error)
		}
		queues[i] = live{c.RecipientID, c.SenderID}
		for _, step := range []struct {
			key    *ecdh.PrivateKey
			entity queue.ID
			cmd    queue.Command
		}{
			{rk, c.RecipientID, queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(sk)}},
			{sk, c.SenderID, queue.Command{Tag: queue.TagSEND, Body: []byte("timing")}},
		} {
			r, err := w.do(step.key, step.entity[:], step.cmd)
			if err != nil {
				return nil, err
			}
			if r.Tag != queue.TagOK {
				return nil, fmt.Errorf("%v: %v %v", step.cmd.Tag, r.Tag, r.Error)
			}
		}
	}

	// The measuring session is another one: the relay may cache the
	// authorization keys that a session has proven (section 8), so the
	// session that created the queues would be answered faster, as their
	// owner is.
	w.close()
	if w, err = dialWire(ctx, target.addr, o.transport); err != nil {
		return nil, err
	}
	// A key that authorizes nothing here; the SKEY of a live queue carries
	// another sender key than the one it is secured with.
	wrong, _ := queue.GenerateKey()
	commands := []struct {
		tag    queue.Tag
		sender bool // the entity is a sender ID
		cmd    queue.Command
	}{
		{queue.TagKEY, false, queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(wrong)}},
		{queue.TagSKEY, true, queue.Command{Tag: queue.TagSKEY, SenderKey: queue.PublicKey(wrong)}},
		{queue.TagSUB, false, queue.Command{Tag: queue.TagSUB}},
		{queue.TagACK, false, queue.Command{Tag: queue.TagACK, MsgID: queue.NewID()}},
		{queue.TagGET, false, queue.Command{Tag: queue.TagGET}},
		{queue.TagOFF, false, queue.Command{Tag: queue.TagOFF}},
		{queue.TagDEL, false, queue.Command{Tag: queue.TagDEL}},
		{queue.TagSEND, true, queue.Command{Tag: queue.TagSEND, Body: bytes.Repeat([]byte{1}, 1000)}},
	}
	res := &timingResult{Transport: o.transport, Rounds: o.rounds}
	for _, c := range commands {
		o.progressf("timing %v", c.tag)
		var unknown, known []float64 // µs
		for i := range 2 * o.rounds {
			var id queue.ID
			if i%2 == 0 {
				id = queue.NewID()
			} else if q := queues[i/2%len(queues)]; c.sender {
				id = q.sid
			} else {
				id = q.rid
			}
			start := time.Now()
			r, err := w.do(wrong, id[:], c.cmd)
			d := time.Since(start)
			if err != nil {
				return nil, err
			}
			if r.Tag != queue.TagERR || r.Error != queue.AUTH {
				return nil, fmt.Errorf("%v for a %s: %v %v, want ERR AUTH", c.tag, map[bool]string{true: "unknown ID", false: "live queue"}[i%2 == 0], r.Tag, r.Error)
			}
			us := float64(d) / float64(time.Microsecond)
			if i%2 == 0 {
				unknown = append(unknown, us)
			} else {
				known = append(known, us)
			}
		}
		u, k := median(unknown), median(known)
		res.Commands = append(res.Commands, timingRow{Command: c.tag.String(), UnknownUs: u, KnownUs: k, Ratio: k / u})
	}
	return res, nil
}

// wireSession is one hand-driven protocol session, one command at a time.
type wireSession struct {
	rw      io.ReadWriter
	closeFn func()
	binding []byte
	sessKey queue.Key
	buf     []byte
}

// wireTimeout bounds each command of a wire session.
const wireTimeout = 30 * time.Second

// dialWire connects to addr over transport, checks the relay's identity
// and does the hush handshake.
func dialWire(ctx context.Context, addr queue.Address, transport string) (*wireSession, error) {
	ctx, cancel := context.WithTimeout(ctx, wireTimeout)
	defer cancel()
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{queue.ALPN},
		InsecureSkipVerify: true, // VerifyConnection checks the pinned identity
		VerifyConnection: func(cs tls.ConnectionState) error {
			return queue.VerifyChain(cs.PeerCertificates, addr.Fingerprint, time.Now())
		},
	}
	w := &wireSession{buf: make([]byte, queue.BlockSize)}
	var st tls.ConnectionState
	switch transport {
	case "tcp":
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr.HostPort())
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		w.rw, w.closeFn, st = tc, func() { tc.Close() }, tc.ConnectionState()
	default:
		qc, err := quic.DialAddr(ctx, addr.HostPort(), conf, nil)
		if err != nil {
			return nil, err
		}
		s, err := qc.OpenStreamSync(ctx)
		if err != nil {
			qc.CloseWithError(0, "")
			return nil, err
		}
		w.rw, w.closeFn, st = s, func() { qc.CloseWithError(0, "") }, qc.ConnectionState().TLS
	}
	var err error
	if w.binding, err = st.ExportKeyingMaterial(queue.BindingLabel, nil, queue.BindingSize); err != nil {
		w.close()
		return nil, err
	}
	hello := queue.ClientHello{Version: queue.MaxVersion}
	if _, err := w.rw.Write(hello.AppendBlock(nil)); err != nil {
		w.close()
		return nil, err
	}
	if _, err := io.ReadFull(w.rw, w.buf); err != nil {
		w.close()
		return nil, err
	}
	sh, err := queue.ParseServerHello(w.buf)
	if err != nil {
		w.close()
		return nil, err
	}
	w.sessKey = sh.SessionKey
	return w, nil
}

func (w *wireSession) close() { w.closeFn() }

// do sends cmd for entity, authorized by key, and returns its response;
// events are skipped.
func (w *wireSession) do(key *ecdh.PrivateKey, entity []byte, cmd queue.Command) (queue.Command, error) {
	corr := make([]byte, queue.CorrIDSize)
	rand.Read(corr)
	t := queue.Transmission{CorrID: corr, Entity: entity, Command: cmd}
	ak, err := queue.AuthKey(key, w.sessKey, w.binding)
	if err != nil {
		return queue.Command{}, err
	}
	t.Auth = queue.AppendAuth(nil, &ak, t.AppendSigned(nil))
	var b queue.BlockBuilder
	b.Add(t.Append(nil))
	if _, err := w.rw.Write(b.AppendBlock(nil)); err != nil {
		return queue.Command{}, err
	}
	for {
		if _, err := io.ReadFull(w.rw, w.buf); err != nil {
			return queue.Command{}, err
		}
		txs, err := queue.ParseBlock(nil, w.buf)
		if err != nil {
			return queue.Command{}, err
		}
		for _, raw := range txs {
			r, _, err := queue.ParseTransmission(raw)
			if err != nil {
				return queue.Command{}, err
			}
			if bytes.Equal(r.CorrID, corr) {
				return r.Command, nil
			}
		}
	}
}
