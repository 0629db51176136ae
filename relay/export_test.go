package relay

import (
	"net/netip"

	"github.com/hushrelay/hush/queue"
)

// SetForwardHook makes r a forwarding relay that misbehaves: hook sees
// every RFWD and the proxy session ID of the relay-to-relay session it
// goes on before r sends it, may change both (a redirect), and returns
// how many times r sends it (a replay).
func SetForwardHook(r *Relay, hook func(cmd *queue.Command, session *queue.ID) int) {
	r.forwardHook.Store(&hook)
}

// SetAdmitHook makes r tell hook the source address of every connection
// it accepts, before its caps are checked.
func SetAdmitHook(r *Relay, hook func(netip.Addr)) { r.admitHook.Store(&hook) }
