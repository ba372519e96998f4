package sagas

import "errors"

var (
	// ErrUnknownSagaType is returned for a saga type that was never
	// registered with the manager.
	ErrUnknownSagaType = errors.New("sagas: unknown saga type")

	// ErrLockNotAcquired is returned when another live process held an
	// instance's lock for the whole lock wait. The event is nacked and
	// redelivered; the saga is not failed.
	ErrLockNotAcquired = errors.New("sagas: instance lock not acquired")

	// ErrPoison marks a step attempt that failed for a reason a retry
	// does not cure: the state does not decode ([ErrUndecodableState]),
	// the step panicked ([ErrStepPanicked]) or returned an error, or a
	// command does not marshal. After Config.MaxFailures consecutive ones
	// the instance is marked failed.
	ErrPoison = errors.New("sagas: poison step")

	// ErrUndecodableState is wrapped (with [ErrPoison]) when the stored
	// state does not decode.
	ErrUndecodableState = errors.New("sagas: state does not decode")

	// ErrStepPanicked is wrapped (with [ErrPoison]) when the step
	// panicked.
	ErrStepPanicked = errors.New("sagas: step panicked")
)
