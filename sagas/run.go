package sagas

import (
	"context"
	"fmt"
)

// runStep decodes data (empty data is the zero state of a new instance),
// runs step and encodes the new state. Every failure that a retry does not
// cure wraps ErrPoison; a step error while ctx is done is returned as is,
// for it is a shutdown, not a poison.
func runStep[S any](ctx context.Context, codec Codec[S], step func(context.Context, S, Input) (Result[S], error), data []byte, in Input) (out stepOutput, err error) {
	var state S
	if len(data) > 0 {
		if state, err = codec.Decode(data); err != nil {
			return out, fmt.Errorf("%w: %w: %w", ErrPoison, ErrUndecodableState, err)
		}
	}
	res, err := callStep(ctx, step, state, in)
	if err != nil {
		return out, err
	}
	enc, err := codec.Encode(res.State)
	if err != nil {
		return out, fmt.Errorf("%w: cannot encode state: %w", ErrPoison, err)
	}
	switch res.End {
	case "", OutcomeCompleted, OutcomeCompensated, OutcomeFailed, OutcomeTimedOut:
	default:
		return out, fmt.Errorf("%w: unknown End %q", ErrPoison, res.End)
	}
	return stepOutput{
		state:    enc,
		status:   res.Status,
		commands: res.Commands,
		schedule: res.Schedule,
		cancel:   res.Cancel,
		end:      res.End,
	}, nil
}

// callStep calls step, turning a panic into a poison error.
func callStep[S any](ctx context.Context, step func(context.Context, S, Input) (Result[S], error), state S, in Input) (res Result[S], err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %w: %v", ErrPoison, ErrStepPanicked, v)
		}
	}()
	res, err = step(ctx, state, in)
	if err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("sagas: step interrupted: %w", err)
		}
		return res, fmt.Errorf("%w: step failed: %w", ErrPoison, err)
	}
	return res, nil
}
