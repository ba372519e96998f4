package sagas

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
)

// Load implements [Store.Load]. A stored value that does not decode is
// reported as a [*CorruptInstanceError].
func (s *RedisStore) Load(ctx context.Context, sagaType, id string) (Instance, bool, error) {
	if err := checkInstance(sagaType, id); err != nil {
		return Instance{}, false, err
	}
	h, err := s.client.HGetAll(ctx, s.keys(sagaType, id).inst).Result()
	if err != nil {
		return Instance{}, false, fmt.Errorf("sagas: cannot load %s/%s: %w", sagaType, id, err)
	}
	if len(h) == 0 {
		return Instance{}, false, nil
	}
	inst, err := decodeFields(sagaType, id, h)
	if err != nil {
		return Instance{}, false, err
	}
	return inst, true, nil
}

// Save implements [Store.Save] with one Lua script. A version conflict is
// reported as an error that matches [ErrConflict] with errors.Is.
func (s *RedisStore) Save(ctx context.Context, req SaveRequest) error {
	inst := req.Instance
	if err := checkInstance(inst.Type, inst.ID); err != nil {
		return err
	}
	if inst.Version != req.Expected+1 {
		return fmt.Errorf("sagas: cannot save %s/%s: version %d must be the expected version %d plus one",
			inst.Type, inst.ID, inst.Version, req.Expected)
	}
	if req.Expected < 0 {
		return fmt.Errorf("sagas: cannot save %s/%s: negative expected version %d", inst.Type, inst.ID, req.Expected)
	}
	fields, err := encodeFields(inst)
	if err != nil {
		return fmt.Errorf("sagas: cannot save %s/%s: %w", inst.Type, inst.ID, err)
	}
	record, err := json.Marshal(req.Record)
	if err != nil {
		return fmt.Errorf("sagas: cannot save %s/%s: encoding step record: %w", inst.Type, inst.ID, err)
	}
	limit := req.HistoryLimit
	if limit <= 0 {
		limit = s.historyLimit
	}

	args := make([]any, 0, 8+len(fields)+2*len(inst.Timeouts))
	args = append(args,
		req.Expected, inst.ID, record, limit,
		flag(len(inst.Pending) > 0), flag(inst.Outcome == ""), inst.StartedAt.UnixMilli(),
		len(fields))
	args = append(args, fields...)
	for _, t := range inst.Timeouts {
		args = append(args, dueScore(t.Due), inst.ID+"\x00"+t.ID)
	}

	k := s.keys(inst.Type, inst.ID)
	res, err := saveScript.Run(ctx, s.client,
		[]string{k.inst, k.hist, k.pending, k.timeouts, k.active}, args...).Int64Slice()
	if err != nil {
		return fmt.Errorf("sagas: cannot save %s/%s: %w", inst.Type, inst.ID, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("sagas: cannot save %s/%s: unexpected script reply %v", inst.Type, inst.ID, res)
	}
	if res[0] != 1 {
		return fmt.Errorf("%w: %s/%s expected version %d, stored %d",
			ErrConflict, inst.Type, inst.ID, req.Expected, res[1])
	}
	return nil
}

// flag encodes a condition as a script argument.
func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// MarkSent implements [Store.MarkSent] with one Lua script.
func (s *RedisStore) MarkSent(ctx context.Context, sagaType, id string, uuids []string) error {
	if err := checkInstance(sagaType, id); err != nil {
		return err
	}
	if len(uuids) == 0 {
		return nil
	}
	args := make([]any, 0, 1+len(uuids))
	args = append(args, id)
	for _, u := range uuids {
		args = append(args, u)
	}
	k := s.keys(sagaType, id)
	if err := markSentScript.Run(ctx, s.client, []string{k.inst, k.pending}, args...).Err(); err != nil {
		return fmt.Errorf("sagas: cannot mark messages of %s/%s sent: %w", sagaType, id, err)
	}
	return nil
}

// History implements [Store.History]. A record that does not decode is
// reported as a [*CorruptInstanceError].
func (s *RedisStore) History(ctx context.Context, sagaType, id string) ([]StepRecord, error) {
	if err := checkInstance(sagaType, id); err != nil {
		return nil, err
	}
	raw, err := s.client.LRange(ctx, s.keys(sagaType, id).hist, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("sagas: cannot read the history of %s/%s: %w", sagaType, id, err)
	}
	records := make([]StepRecord, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal([]byte(r), &records[i]); err != nil {
			return nil, &CorruptInstanceError{Type: sagaType, ID: id, Field: "history[" + strconv.Itoa(i) + "]", Err: err}
		}
	}
	return records, nil
}
