#!/bin/bash
# bench/e2e.sh - end-to-end benchmark: examples/cache with and without uzswap.
#
# Runs the same binary with the same arguments N times each way, alternating
# (baseline first in odd repetitions, uzswap first in even ones, so that a
# drift in machine load hits both alike), and reports per phase the median
# wall time and the ratio uzswap/baseline, the peak RSS both ways and the
# memory saved, the compression ratio from uzswap's UZSWAP_STATS=1 summary,
# and the project's targets, with UZSWAP_LIMIT at --limit-percent (25) of
# the data:
#
#   - peak RSS under uzswap   <= limit + 10%
#   - hot phase time ratio    <= 1.10
#   - the checksum            equal in every run, both ways
#
# Usage:
#   bench/e2e.sh [OPTIONS] [-- EXTRA CACHE ARGS...]
#
# Options:
#   --build DIR          build tree with examples/cache and the shim
#                        (default: $UZSWAP_BUILD, else ./build in the repo)
#   --reps N             repetitions each way (default 3)
#   --size MIB           data set of examples/cache (default 512)
#   --hot-percent P      its hot set (default 5)
#   --ops N              operations in its hot phase (default 10000000)
#   --scan               add its cold-scan phase
#   --settle S           pause S seconds after the build phase (cache --sleep),
#                        both ways, so that the hot phase under uzswap starts
#                        from a settled state (default 0: no pause)
#   --limit-percent P    UZSWAP_LIMIT as a share of --size (default 25)
#   --cli                run through `tools/uzswap run` instead of LD_PRELOAD
#   --timeout S          kill a run after S seconds, reported as a hang
#                        (default 1800)
#   --keep DIR           keep every run's output in DIR (default: a temporary
#                        directory, removed at the end unless a run failed)
#   -h, --help           this text
#
# Other UZSWAP_* variables in the environment reach the uzswap runs (and are
# removed from the baseline runs), e.g.
#   UZSWAP_SCAN_INTERVAL=100ms bench/e2e.sh --reps 1 --size 256
#
# Exit status: 0 every target met, 1 a target missed, 2 bad usage or a run
# that crashed, hung or printed no checksum.  Run by hand; not part of
# `make check`.  Timings are only meaningful on an otherwise idle machine.
set -euo pipefail

repo=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
build=${UZSWAP_BUILD:-$repo/build}
reps=3 size=512 hot=5 ops=10000000 scan= settle=0 limit_pct=25 cli= timeout_s=1800
keep=
extra=()

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "e2e: $*" >&2; exit 2; }
need_arg() { [ $# -ge 2 ] || die "$1 needs a value (try --help)"; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while [ $# -gt 0 ]; do
	case $1 in
	--build) need_arg "$@"; build=$2; shift ;;
	--reps) need_arg "$@"; reps=$2; shift ;;
	--size) need_arg "$@"; size=$2; shift ;;
	--hot-percent) need_arg "$@"; hot=$2; shift ;;
	--ops) need_arg "$@"; ops=$2; shift ;;
	--scan) scan=--scan ;;
	--settle) need_arg "$@"; settle=$2; shift ;;
	--limit-percent) need_arg "$@"; limit_pct=$2; shift ;;
	--cli) cli=1 ;;
	--timeout) need_arg "$@"; timeout_s=$2; shift ;;
	--keep) need_arg "$@"; keep=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) die "unknown option \"$1\" (try --help)" ;;
	esac
	shift
done
for v in reps size ops limit_pct timeout_s; do
	is_uint "${!v}" && [ "${!v}" -gt 0 ] || die "--${v//_/-} needs a whole number above 0"
done
is_uint "$settle" || die "--settle needs a whole number of seconds"
[[ $hot =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--hot-percent needs a number"

build=$(cd "$build" 2>/dev/null && pwd) ||
	die "no build tree at ${UZSWAP_BUILD:-$repo/build}; give --build DIR (see README.md, Build)"
cache=$build/examples/cache
shim=$build/preload/.libs/libuzswap_preload.so
tool=$build/tools/uzswap
[ -x "$cache" ] || die "$cache is missing: run make in $build"
[ -f "$shim" ] || die "$shim is missing: run make in $build"
[ -z "$cli" ] || [ -x "$tool" ] || die "$tool is missing: run make in $build"

limit_mib=$(( size * limit_pct / 100 ))
[ "$limit_mib" -gt 0 ] || die "--limit-percent $limit_pct of $size MiB is under 1 MiB"
args=(--size "$size" --hot-percent "$hot" --ops "$ops" --sleep "$settle" $scan "${extra[@]}")

if [ -n "$keep" ]; then
	mkdir -p "$keep"
	out=$(cd "$keep" && pwd)
	rm -f "$out"/base.* "$out"/uzswap.*     # an earlier run's files
else
	out=$(mktemp -d "${TMPDIR:-/tmp}/uzswap-e2e.XXXXXX")
fi

# The uzswap variables of the caller, for the uzswap runs only.
uz_env=()
while IFS= read -r name; do
	case $name in
	UZSWAP_LIMIT|UZSWAP_STATS|UZSWAP_DISABLE|UZSWAP_PRELOAD_PATH) ;;
	*) uz_env+=("$name=${!name}") ;;
	esac
done < <(compgen -e | grep '^UZSWAP_' || true)
clean_env=(env)
while IFS= read -r name; do clean_env+=(-u "$name"); done < <(compgen -e | grep '^UZSWAP_' || true)

# run KIND N: one run, output in $out/KIND.N.{out,err}; its exit status in
# $out/KIND.N.rc.
run() {
	local kind=$1 n=$2 rc=0 cmd
	if [ "$kind" = base ]; then
		cmd=("${clean_env[@]}" "$cache" "${args[@]}")
	elif [ -n "$cli" ]; then
		cmd=("${clean_env[@]}" "${uz_env[@]}" UZSWAP_PRELOAD_PATH="$shim"
		     "$tool" run --limit "${limit_mib}M" --stats -- "$cache" "${args[@]}")
	else
		cmd=("${clean_env[@]}" "${uz_env[@]}" UZSWAP_LIMIT="${limit_mib}M"
		     UZSWAP_STATS=1 LD_PRELOAD="$shim" "$cache" "${args[@]}")
	fi
	printf '%s\n' "${cmd[*]}" > "$out/$kind.$n.cmd"
	timeout --kill-after=10 "$timeout_s" "${cmd[@]}" \
		> "$out/$kind.$n.out" 2> "$out/$kind.$n.err" || rc=$?
	echo "$rc" > "$out/$kind.$n.rc"
	printf '  %-6s run %d: exit %d' "$kind" "$n" "$rc"
	[ "$rc" = 124 ] || [ "$rc" = 137 ] && printf ' (HUNG: killed after %ss)' "$timeout_s"
	printf ', %s\n' "$(awk '$1 == "phase" { printf "%s%s %ss", sep, $2, $3; sep = ", " }' \
		"$out/$kind.$n.out")"
}

# median: of the numbers on stdin, one a line ("-" if none).
median() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (!NR) { print "-"; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# phase_field KIND PHASE FIELD: FIELD of the phase line in every KIND run.
#   FIELD 3 = seconds, 6 = VmRSS MiB after the phase, 9 = VmHWM MiB so far,
#   12 = CPU seconds of the whole process in the phase.
phase_field() {
	local f
	for f in "$out/$1".*.out; do
		awk -v p="$2" -v f="$3" '$1 == "phase" && $2 == p { print $f }' "$f"
	done
}

# peak KIND: VmHWM at the end of each KIND run.
peak() {
	local f
	for f in "$out/$1".*.out; do
		awk '$1 == "phase" { v = $9 } END { if (v != "") print v }' "$f"
	done
}

echo "e2e: examples/cache ${args[*]}"
echo "e2e: $reps repetitions each way; uzswap with UZSWAP_LIMIT=${limit_mib}M" \
	"($limit_pct% of $size MiB)${uz_env[*]:+, ${uz_env[*]}}${cli:+, through uzswap run}"
echo "e2e: build $build, output in $out"
for n in $(seq 1 "$reps"); do
	if [ $((n % 2)) = 1 ]; then run base "$n"; run uzswap "$n"
	else run uzswap "$n"; run base "$n"; fi
done

# ------------------------------------------------------------ the report
failed_runs=0
for f in "$out"/*.rc; do
	k=${f%.rc}
	if [ "$(cat "$f")" != 0 ] || ! grep -q '^checksum ' "$k.out"; then
		failed_runs=$((failed_runs + 1))
		echo "e2e: $(basename "$k") failed (exit $(cat "$f")); last lines of its stderr:" >&2
		tail -n 5 "$k.err" | sed 's/^/    /' >&2
	fi
done

echo
printf '%-8s %12s %12s %7s %10s %10s %7s   %s\n' phase "baseline s" "uzswap s" ratio \
	"base cpu" "uzs cpu" ratio "rss after (MiB) baseline / uzswap"
phases=$(awk '$1 == "phase" { print $2 }' "$out/base.1.out")
hot_ratio=- hot_cpu_ratio=-
ratio() { awk -v b="$1" -v u="$2" 'BEGIN { if (b > 0 && u != "-") printf "%.2f", u / b; else print "-" }'; }
for p in $phases; do
	b=$(phase_field base "$p" 3 | median)
	u=$(phase_field uzswap "$p" 3 | median)
	bc=$(phase_field base "$p" 12 | median)
	uc=$(phase_field uzswap "$p" 12 | median)
	br=$(phase_field base "$p" 6 | median)
	ur=$(phase_field uzswap "$p" 6 | median)
	r=$(ratio "$b" "$u")
	rc=$(ratio "$bc" "$uc")
	[ "$p" = hot ] && hot_ratio=$r && hot_cpu_ratio=$rc
	printf '%-8s %12s %12s %7s %10s %10s %7s   %s / %s\n' "$p" "$b" "$u" "$r" \
		"$bc" "$uc" "$rc" "$br" "$ur"
done
echo "(cpu: seconds of CPU the whole process used, uzswap's threads included;"
echo " on a busy machine it tracks the work done better than wall time does)"

base_peak=$(peak base | median)
uz_peak=$(peak uzswap | median)
echo
awk -v b="$base_peak" -v u="$uz_peak" -v l="$limit_mib" 'BEGIN {
	printf "peak RSS (VmHWM, median): baseline %s MiB, uzswap %s MiB (limit %d MiB)\n", b, u, l
	if (b > 0 && u != "-")
		printf "memory saved at peak: %.1f MiB (%.0f%%)\n", b - u, 100 * (b - u) / b }'

# The uzswap summary: "uzswap: effective ratio 3.00x (held / pool), ..."
ratios=$(cat "$out"/uzswap.*.err 2>/dev/null |
	sed -n 's/^uzswap: effective ratio \([0-9.]*\)x.*/\1/p' | median)
echo "compression ratio (uzswap summary, held / pool, median):" \
	"$([ "$ratios" = - ] && echo "- (nothing was compressed)" || echo "${ratios}x")"
echo "uzswap summary of the last uzswap run:"
grep '^uzswap:' "$out/uzswap.$reps.err" | sed 's/^/    /' || echo "    (none: see $out/uzswap.$reps.err)"

# Notes that say when the figures above mean less than they seem to.
hot_rss=$(phase_field uzswap hot 6 | median)
awk -v r="$ratios" -v size="$size" -v hot="$hot" -v l="$limit_mib" -v h="$hot_rss" 'BEGIN {
	if (r != "-" && r > 0) {
		pool = size * (100 - hot) / 100 / r; need = pool + size * hot / 100
		if (need > l)
			printf "note: at %.2fx the cold data needs %.0f MiB of pool, and with the hot " \
			       "set %.0f MiB: more than the %d MiB limit, so uzswap must take out the " \
			       "hot set too (a limit of about %d%% of the data leaves room)\n",
			       r, pool, need, l, int(need * 1.15 * 100 / size + 0.99)
	}
	if (h != "-" && h > l * 1.10)
		printf "note: the RSS after the hot phase under uzswap was %s MiB, over the " \
		       "limit: uzswap had not brought it down by then (the run may be too short " \
		       "for UZSWAP_SCAN_INTERVAL; try --settle or more --ops), so the hot " \
		       "phase ratio may not show the steady state\n", h
}' | fold -s -w 78

# ------------------------------------------------------------ the targets
echo
echo "targets:"
status=0
check() {   # check OK DESCRIPTION
	if [ "$1" = 1 ]; then printf '  [ ok ] %s\n' "$2"
	else printf '  [FAIL] %s\n' "$2"; status=1; fi
}
ok=$(awk -v u="$uz_peak" -v l="$limit_mib" 'BEGIN { print (u != "-" && u <= l * 1.10) ? 1 : 0 }')
check "$ok" "peak RSS under uzswap $uz_peak MiB <= limit + 10% ($(awk -v l="$limit_mib" 'BEGIN { printf "%.1f", l * 1.1 }') MiB)"
ok=$(awk -v r="$hot_ratio" 'BEGIN { print (r != "-" && r <= 1.10) ? 1 : 0 }')
check "$ok" "hot phase time ratio $hot_ratio <= 1.10"
ok=$(awk -v r="$hot_cpu_ratio" 'BEGIN { print (r != "-" && r <= 1.10) ? 1 : 0 }')
check "$ok" "hot phase CPU time ratio $hot_cpu_ratio <= 1.10"
sums=$(cat "$out"/*.out | sed -n 's/^checksum //p' | sort | uniq -c)
nsums=$(printf '%s\n' "$sums" | grep -c . || true)
ok=$([ "$nsums" = 1 ] && [ "$failed_runs" = 0 ] && echo 1 || echo 0)
check "$ok" "checksum equal in all $((2 * reps)) runs: $(printf '%s' "$sums" | awk '{ printf "%s%s (x%s)", sep, $2, $1; sep = ", " }')"

if [ "$failed_runs" != 0 ]; then
	echo "e2e: $failed_runs run(s) failed; every run's output is in $out" >&2
	exit 2
fi
if [ -n "$keep" ] || [ "$status" != 0 ]; then
	echo "e2e: every run's output is in $out"
else
	rm -rf "$out"
fi
exit $status
