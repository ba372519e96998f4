package promobs

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// registerShared registers c with reg, or, when reg already holds a
// collector of the same type with the same metrics (from an earlier
// constructor call on that registry), returns that one instead, so that
// two hooks or middlewares on one registry count into the same series.
// what names the metrics in the error.
func registerShared[C prometheus.Collector](reg prometheus.Registerer, c C, what string) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var zero C
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		return zero, fmt.Errorf("cannot register %s: %w", what, err)
	}
	existing, ok := are.ExistingCollector.(C)
	if !ok {
		return zero, fmt.Errorf("cannot reuse registered collector of type %T: %w", are.ExistingCollector, err)
	}
	return existing, nil
}
