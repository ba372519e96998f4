#!/usr/bin/env bash
# Runs the sub-benchmarks of one benchmark each in its own process, in
# interleaved rounds, so that no variant inherits the heap, goroutines or
# caches of the one before it, and prints per-variant medians and the
# overhead ratios asked for.
#
#   scripts/bench-isolated.sh PKG BENCH ROUNDS BENCHTIME VARIANT...
#
# A VARIANT is the NAME of a sub-benchmark of BENCH in PKG (BENCH/NAME), or
# OTHERPKG:OTHERBENCH/NAME, a sub-benchmark of another benchmark, of PKG or
# of another package: ./cqrsbus:BenchmarkRedisCommand/plain. The script
# builds one test binary per package and runs every variant in the same
# interleaved rounds. A variant of the first form is reported as NAME; one
# of the second form as P.NAME, P the last element of OTHERPKG's import
# path (cqrsbus.plain). That label is how RATIOS and THROUGHPUT name it
# (THROUGHPUT="cqrsbus.full/cqrsbus.plain"), so a label has no '/' and two
# variants may not share one. The variants of one benchmark of one package
# are a group; the first variant of a group is its base.
#
# RATIOS="a/b c/d" prints, for each pair, the overhead ratio
# (a - base) / (b - base), where base is the base of a's group (with one
# benchmark: the first VARIANT): once from the per-variant medians and once
# as the median of the per-round ratios. Rounds alternate the variant order
# (forward, then backward), so that a machine that speeds up or slows down
# during a round does not favour one variant; the per-round ratio pairs
# runs made seconds apart and is the figure to trust on a noisy machine.
# Raw `go test` output is kept in $BENCH_OUT (default: a temporary file)
# for benchstat. The "overhead ns" column is each variant's median less
# that of its group's base.
#
# THROUGHPUT="a/b c/d" prints, for each pair, the throughput of a relative
# to b (time per op of b over that of a) from the medians, and the median
# of the per-round ratios with its 95% confidence interval (distribution
# free: order statistics of the per-round ratios). THROUGHPUT=all compares
# every variant with the base of its group (with one benchmark: with the
# first); "all a/b ..." adds pairs to that.
#
# CPU sets -test.cpu (GOMAXPROCS of the benchmark), default 1.
set -euo pipefail

pkg=$1 bench=$2 rounds=$3 benchtime=$4
shift 4
out=${BENCH_OUT:-$(mktemp)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Per package (as given): its test binary, directory and import path.
declare -A bins dirs ipaths
nbins=0
addpkg() {
	if [[ -n ${bins[$1]:-} ]]; then return; fi
	bins[$1]=$tmp/bin$((nbins++))
	go test -c -o "${bins[$1]}" "$1"
	dirs[$1]=$(go list -f '{{.Dir}}' "$1")
	ipaths[$1]=$(go list -f '{{.ImportPath}}' "$1")
}
addpkg "$pkg"

# Per variant: label, package, benchmark, sub-benchmark name, group base.
labels=() vpkgs=() vbenches=() vnames=() bases=()
declare -A seen groupbase
for a in "$@"; do
	if [[ $a == *:* ]]; then
		p=${a%%:*} rest=${a#*:}
		if [[ $rest != */* || -z ${rest%%/*} || -z ${rest#*/} || -z $p ]]; then
			echo "bench-isolated.sh: variant $a: want NAME or PKG:BENCH/NAME" >&2
			exit 2
		fi
		addpkg "$p"
		b=${rest%%/*} name=${rest#*/}
		label=${ipaths[$p]##*/}.$name
	else
		p=$pkg b=$bench name=$a label=$a
	fi
	if [[ $label == */* || -n ${seen[$label]:-} ]]; then
		echo "bench-isolated.sh: variant $a: its label $label has a '/' or is another variant's" >&2
		exit 2
	fi
	seen[$label]=1
	group="${ipaths[$p]} $b"
	[[ -n ${groupbase[$group]:-} ]] || groupbase[$group]=$label
	labels+=("$label") vpkgs+=("$p") vbenches+=("$b") vnames+=("$name") bases+=("${groupbase[$group]}")
done

# $tmp/results: each result line of $out, after the label of its variant.
: >"$out"
: >"$tmp/results"
nv=${#labels[@]}
for ((r = 1; r <= rounds; r++)); do
	for ((j = 0; j < nv; j++)); do
		i=$j
		if ((r % 2 == 0)); then i=$((nv - 1 - j)); fi
		p=${vpkgs[i]} b=${vbenches[i]}
		lines=$(cd "${dirs[$p]}" && "${bins[$p]}" -test.run '^$' -test.bench "^${b}/${vnames[i]}\$" \
			-test.benchmem -test.cpu "${CPU:-1}" -test.benchtime "$benchtime" -test.count 1 |
			grep "^${b}/")
		printf '%s\n' "$lines" >>"$out"
		printf '%s\n' "$lines" | awk -v l="${labels[i]}" '{ print l, $0 }' >>"$tmp/results"
	done
done

echo "raw results: $out"
tpairs=${THROUGHPUT:-}
if [[ $tpairs == all || $tpairs == "all "* ]]; then
	extra=${tpairs#all}
	tpairs=""
	for ((i = 0; i < nv; i++)); do
		[[ ${labels[i]} == "${bases[i]}" ]] || tpairs+="${labels[i]}/${bases[i]} "
	done
	tpairs+=$extra
fi
awk -v labels="${labels[*]}" -v bases="${bases[*]}" -v ratios="${RATIOS:-}" -v tpairs="$tpairs" '
	BEGIN {
		k = split(labels, order, " ")
		split(bases, bs, " ")
		w = 28
		for (i = 1; i <= k; i++) { gb[order[i]] = bs[i]; if (length(order[i]) > w) w = length(order[i]) }
	}
	{
		v = $1
		n[v]++
		for (f = 4; f < NF; f++) {
			if ($(f + 1) == "ns/op") t[v, n[v]] = $f
			if ($(f + 1) == "B/op") b[v] = $f
			if ($(f + 1) == "allocs/op") a[v] = $f
			if ($(f + 1) == "go-cpu-ns/msg") { gc[v, n[v]] = $f; cpu = 1 }
			if ($(f + 1) == "redis-cpu-ns/msg") rc[v, n[v]] = $f
		}
	}
	function median(v) { return medianOf(t, v) }
	function medianOf(arr, v,   i, j, x, m, s) {
		m = n[v]
		for (i = 1; i <= m; i++) s[i] = arr[v, i]
		for (i = 2; i <= m; i++) { x = s[i]; for (j = i - 1; j >= 1 && s[j] > x; j--) s[j + 1] = s[j]; s[j + 1] = x }
		return m % 2 ? s[(m + 1) / 2] : (s[m / 2] + s[m / 2 + 1]) / 2
	}
	END {
		# Benchmarks that report the CPU time per message (the Redis
		# harness) get its medians: of the Go process, and of the Redis
		# server, in µs.
		cols = cpu ? sprintf(" %11s %11s", "go cpu us", "redis cpu us") : ""
		printf "%-" w "s %12s %12s %10s %10s%s\n", "variant", "median ns/op", "overhead ns", "B/op", "allocs/op", cols
		for (i = 1; i <= k; i++) {
			v = order[i]; med[v] = median(v)
			cols = cpu ? sprintf(" %11.1f %11.1f", medianOf(gc, v) / 1000, medianOf(rc, v) / 1000) : ""
			printf "%-" w "s %12.0f %12.0f %10s %10s%s\n", v, med[v], med[v] - med[gb[v]], b[v], a[v], cols
		}
		m = split(ratios, rs, " ")
		for (i = 1; i <= m; i++) {
			split(rs[i], q, "/")
			base = gb[q[1]]
			delete s
			c = 0
			for (r = 1; r <= n[base] && r <= n[q[1]] && r <= n[q[2]]; r++) {
				d = t[q[2], r] - t[base, r]
				if (d > 0) s[++c] = (t[q[1], r] - t[base, r]) / d
			}
			for (r = 2; r <= c; r++) { x = s[r]; for (j = r - 1; j >= 1 && s[j] > x; j--) s[j + 1] = s[j]; s[j + 1] = x }
			pr = c == 0 ? "n/a" : sprintf("%.2f", c % 2 ? s[(c + 1) / 2] : (s[c / 2] + s[c / 2 + 1]) / 2)
			dm = med[q[2]] - med[base]
			mr = dm > 0 ? sprintf("%.2f", (med[q[1]] - med[base]) / dm) : "n/a"
			printf "overhead ratio %s / %s = %s (medians), %s (median of %d per-round ratios)\n", q[1], q[2], mr, pr, c
		}
		m = split(tpairs, ps, " ")
		if (m > 0) {
			printf "\n%-" w "s %10s %10s %10s %9s %9s %9s %17s\n", "throughput", "vs", "us/msg", "msgs/s", "allocs", "medians", "rounds", "95% CI"
		}
		for (i = 1; i <= m; i++) {
			split(ps[i], q, "/")
			delete s
			c = 0
			for (r = 1; r <= n[q[1]] && r <= n[q[2]]; r++) if (t[q[1], r] > 0) s[++c] = t[q[2], r] / t[q[1], r]
			for (r = 2; r <= c; r++) { x = s[r]; for (j = r - 1; j >= 1 && s[j] > x; j--) s[j + 1] = s[j]; s[j + 1] = x }
			pr = c % 2 ? s[(c + 1) / 2] : (s[c / 2] + s[c / 2 + 1]) / 2
			# The largest k with P(Binomial(c, 1/2) < k) <= 0.025: the
			# k-th smallest and largest ratios bound the median.
			k = 0; cum = 0; pk = 0.5 ^ c
			for (j = 0; j < c; j++) { cum += pk; if (cum > 0.025) break; k = j + 1; pk = pk * (c - j) / (j + 1) }
			ci = k >= 1 ? sprintf("[%.3f, %.3f]", s[k], s[c - k + 1]) : "n/a (too few)"
			printf "%-" w "s %10s %10.1f %10.0f %9s %9.3f %9.3f %17s\n", q[1], q[2], med[q[1]] / 1000, 1e9 / med[q[1]], a[q[1]], med[q[2]] / med[q[1]], pr, ci
		}
	}' "$tmp/results"
