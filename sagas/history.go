package sagas

import (
	"context"
	"fmt"
)

// History returns the step records of instance id of sagaType, oldest
// first (at most HistoryLimit of them): what happened to it, which process
// did it, and the trace and span IDs to open each step in a tracing UI. It
// returns ErrUnknownSagaType for a type never registered, and no records
// for an instance never saved.
func (m *Manager) History(ctx context.Context, sagaType, id string) ([]StepRecord, error) {
	if _, err := m.saga(sagaType); err != nil {
		return nil, err
	}
	recs, err := m.cfg.Store.History(ctx, sagaType, id)
	if err != nil {
		return nil, fmt.Errorf("sagas: cannot read history of %s %s: %w", sagaType, id, err)
	}
	return recs, nil
}
