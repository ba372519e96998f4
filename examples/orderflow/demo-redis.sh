#!/usr/bin/env bash
# make demo-redis: the order flow as one api and two worker processes on
# the Redis at REDIS_ADDR (default 127.0.0.1:6379), sharing a spans
# directory so that the api prints one order's trace across the three.
# Extra arguments go to the api (for example -orders 50).
set -euo pipefail

export REDIS_ADDR="${REDIS_ADDR:-127.0.0.1:6379}"
GO="${GO:-go}"
dir="$(mktemp -d)"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

"$GO" build -o "$dir/orderflow" ./examples/orderflow
for i in 1 2; do
	"$dir/orderflow" -role worker -spans-dir "$dir/spans" >"$dir/worker-$i.log" 2>&1 &
	pids+=("$!")
done

status=0
"$dir/orderflow" -role api -spans-dir "$dir/spans" "$@" || status=$?

# Stop the workers: SIGTERM, a clean shutdown that flushes their telemetry.
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for i in "${!pids[@]}"; do
	if ! wait "${pids[$i]}"; then
		echo "worker $((i + 1)) did not stop cleanly; its log:" >&2
		tail -n 20 "$dir/worker-$((i + 1)).log" >&2
		status=1
	fi
done
pids=()
exit "$status"
