package watermillobs

import "sync"

// ResetDefaultPropagatorLog lets a test see the once-only record about the
// default propagator again.
func ResetDefaultPropagatorLog() { defaultPropagatorLog = sync.Once{} }
