package agent_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/hushrelay/hush/client/agent"
)

// FuzzParseRequest checks that ParseRequest never panics, that an error
// comes with a JSON-RPC code, and that a request it accepts survives a
// round trip through AppendJSON unchanged. Seeds: testdata/fuzz.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"send","params":{"contact":"bob","text":"hi"}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := agent.ParseRequest(line)
		if err != nil {
			switch err.Code {
			case agent.CodeParse, agent.CodeInvalidRequest, agent.CodeInvalidParams:
			default:
				t.Fatalf("code %d for %q", err.Code, line)
			}
			if req.ID != nil && !json.Valid(req.ID) {
				t.Fatalf("invalid id %q with the error", req.ID)
			}
			return
		}
		if req.Method == "" {
			t.Fatalf("accepted %q without a method", line)
		}
		if req.Params != nil && (req.Params[0] != '{' || !json.Valid(req.Params)) {
			t.Fatalf("params %q", req.Params)
		}
		enc := req.AppendJSON(nil)
		again, err := agent.ParseRequest(enc)
		if err != nil {
			t.Fatalf("%s: reparsing %s: %v", line, enc, err)
		}
		if again.Method != req.Method || !bytes.Equal(again.ID, req.ID) || !bytes.Equal(again.Params, req.Params) {
			t.Fatalf("round trip of %q: %+v, then %+v", line, req, again)
		}
	})
}
