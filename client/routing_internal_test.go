package client

import (
	"context"
	"errors"
	"testing"

	"github.com/hushrelay/hush/client/link"
)

// TestRoutingDefault: RoutingAuto is RoutingNever when every connection
// goes through Tor, RoutingUnknown otherwise (TorPrefer dials relays
// without an onion host directly); a setting given is kept; Open refuses
// one that is none of the settings.
func TestRoutingDefault(t *testing.T) {
	for _, tc := range []struct {
		routing Routing
		tor     link.TorMode
		want    Routing
	}{
		{RoutingAuto, "", RoutingUnknown},
		{RoutingAuto, link.TorOff, RoutingUnknown},
		{RoutingAuto, link.TorPrefer, RoutingUnknown},
		{RoutingAuto, link.TorRequired, RoutingNever},
		{RoutingAlways, link.TorRequired, RoutingAlways},
		{RoutingUnknown, link.TorRequired, RoutingUnknown},
		{RoutingNever, "", RoutingNever},
	} {
		c := &Client{cfg: Config{Routing: tc.routing, Dial: link.Config{Tor: tc.tor}}}
		if got := c.routing(); got != tc.want {
			t.Errorf("Routing %v with tor %q: %v, want %v", tc.routing, tc.tor, got, tc.want)
		}
	}
	if _, err := Open(context.Background(), Config{Home: t.TempDir(), Routing: "sometimes"}); !errors.Is(err, ErrRouting) {
		t.Errorf("Open with Routing \"sometimes\": %v, want ErrRouting", err)
	}
}
