//go:build linux && race

package main

// raceEnabled is set when the tests run with the race detector; the binary
// they drive is then built with it too.
const raceEnabled = true
