package torutil

import (
	"maps"
	"strings"
	"testing"
)

// quoteValue is the control protocol's QuotedString, as tor writes it: a
// backslash before each backslash and double quote.
func quoteValue(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// FuzzParseKeywords feeds parseKeywords arbitrary control-port lines (from a
// tor process, so semi-trusted): it must not panic or loop, and whatever it
// returns for a keyword must come back the same when that keyword is written
// again as KEY="VALUE". A keyword written from fuzzed parts must parse back.
// Seeds are in testdata/fuzz/FuzzParseKeywords.
func FuzzParseKeywords(f *testing.F) {
	f.Add(`PROGRESS=75 TAG=done SUMMARY="Done" WARNING="a \"q\" \\ word" FLAG`, "KEY", `va"l\ue`)
	f.Add(`A= B="" C="unterminated`, "SUMMARY", "")
	f.Add(`=x  ="y" \ "\`, "K", " spaced value ")
	f.Fuzz(func(t *testing.T, line, key, val string) {
		for k, v := range parseKeywords(line) {
			if k == "" || strings.ContainsAny(k, `= "`) {
				continue // not a keyword that can be written again
			}
			again := parseKeywords(k + "=" + quoteValue(v))
			if len(again) != 1 || again[k] != v {
				t.Fatalf("%q from %q: written again as %q, parsed as %q", k, line, k+"="+quoteValue(v), again)
			}
		}
		if key == "" || key == "FIRST" || key == "LAST" || strings.ContainsAny(key, `= "`) {
			return
		}
		s := "FIRST=1 " + key + "=" + quoteValue(val) + " LAST"
		want := map[string]string{"FIRST": "1", key: val, "LAST": ""}
		if got := parseKeywords(s); !maps.Equal(got, want) {
			t.Fatalf("parseKeywords(%q) = %q, want %q", s, got, want)
		}
	})
}
