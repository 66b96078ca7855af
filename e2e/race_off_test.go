//go:build !race

package e2e

// raceEnabled tells whether these tests run with the race detector; the
// binary they build then has it too.
const raceEnabled = false
