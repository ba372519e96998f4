package watermillobs_test

import (
	"regexp"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// semver.org's recommended pattern.
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

func TestVersionSemver(t *testing.T) {
	if !semver.MatchString(watermillobs.Version) {
		t.Errorf("Version %q is not semantic versioning", watermillobs.Version)
	}
	if watermillobs.ScopeName != "github.com/cqrs-ddd/watermill-observability/watermillobs" {
		t.Errorf("ScopeName %q is not the import path", watermillobs.ScopeName)
	}
}
