package collector

import "time"

// State is the outcome of one check of one direction.
type State string

// The states a check can end in. They are also the values of the result
// label of spengler_checks_total.
const (
	StateInSync    State = "in_sync"
	StateOutOfSync State = "out_of_sync"
	StateError     State = "error"
)

// maxListedIDs bounds the ids a Result lists by name.
const maxListedIDs = 10

// Result is the outcome of the latest check of one direction. A Result is
// never changed once published: readers may keep it as long as they like.
type Result struct {
	Pair      string
	Direction string
	Source    string
	Target    string

	State  State
	InSync bool
	// Success is true when the check ran without error.
	Success bool
	// Reason says why the direction is not in sync; empty when it is.
	Reason string
	// Error is the failure of the check, redacted; empty when it ran.
	Error string

	Lag        time.Duration
	Duration   time.Duration
	LastCheck  time.Time
	LastInSync time.Time

	RowsSelected int
	RowsChecked  int
	RowsMissing  int
	Pending      int
	// MissingIDs lists a few of the missing ids, oldest first.
	MissingIDs []string
	// RowsDivergent counts the selected rows whose version on the target has
	// differed from the source's for longer than max_lag.
	RowsDivergent int
	// DivergentIDs lists a few of the divergent ids, longest divergent first.
	DivergentIDs []string

	// DataChecks is true when the direction cross-checks rows.
	DataChecks bool
	// Heartbeat is true when the direction has a heartbeat.
	Heartbeat bool
	// HeartbeatFound is true once the direction's heartbeat has been found
	// on the target.
	HeartbeatFound bool
	// HeartbeatAge is the exporter's clock minus the heartbeat found on the
	// target; until one is found, the time since the first was written.
	HeartbeatAge time.Duration

	// Checks counts the checks of this direction by State since it started.
	Checks map[State]uint64
}
