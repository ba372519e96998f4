package watermillobs

// ScopeName is the instrumentation scope name of the tracers and meters
// created by this package: its import path.
const ScopeName = "github.com/cqrs-ddd/watermill-observability/watermillobs"

// Version is the version of this module's instrumentation.
const Version = "0.1.0"
