#!/bin/bash
# bench/realprog.sh - run a real program natively once, then N times under
# uzswap, and compare each run's standard output with the native one.  A
# by-hand correctness check for programs the test suite does not contain
# (python, perl, sort, sqlite3, ...): a wrong byte anywhere in the program's
# memory usually shows as different output or a crash.  Run by hand.
#
# Usage:
#   bench/realprog.sh [--build DIR] [--runs N] [--timeout S] [--keep DIR]
#                     [VAR=VALUE ...] -- PROG [ARGS...]
#
# VAR=VALUE pairs are set for the uzswap runs only, e.g.
#   bench/realprog.sh --runs 50 UZSWAP_LIMIT=20M UZSWAP_SCAN_INTERVAL=10ms \
#       UZSWAP_MIN_REGION=64K -- sh -c 'exec sqlite3 :memory: < bench/workloads/sqlite_index.sql'
# (before 654b183 and 1d5821f that command corrupted the database in about
# 1 run in 70 and hung in about 1 in 75; see bench/README.md).
#
# Standard input is /dev/null; feed input with a shell redirection inside
# `sh -c` as above.  Exit status: 0 every run matched, 1 a run differed,
# crashed or timed out, 2 bad usage.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${UZSWAP_BUILD:-$here/../build} runs=10 timeout=600 keep=
envs=()
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	--) shift; break ;;
	*=*) envs+=("$1"); shift ;;
	-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "realprog.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[ $# -gt 0 ] || { echo "realprog.sh: no program given after --" >&2; exit 2; }
shim=$build/preload/.libs/libuzswap_preload.so
[ -f "$shim" ] || { echo "realprog.sh: no shim at $shim (--build DIR)" >&2; exit 2; }
case $runs in ''|*[!0-9]*) echo "realprog.sh: --runs takes a number" >&2; exit 2 ;; esac
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
[ -n "$keep" ] && mkdir -p "$keep"

t0=$(date +%s.%N)
"$@" < /dev/null > "$tmp/native.out" 2> "$tmp/native.err"
native_rc=$?
t1=$(date +%s.%N)
printf 'native: exit %d, %.2f s, output %s\n' $native_rc "$(echo "$t1 - $t0" | bc)" \
	"$(md5sum < "$tmp/native.out" | cut -c1-12)"
bad=0
for i in $(seq "$runs"); do
	t0=$(date +%s.%N)
	env "${envs[@]}" UZSWAP_STATS=1 LD_PRELOAD="$shim" timeout "$timeout" "$@" \
		< /dev/null > "$tmp/run.out" 2> "$tmp/run.err"
	rc=$?
	t1=$(date +%s.%N)
	verdict=ok
	if [ $rc -eq 124 ]; then verdict="TIMED OUT"
	elif [ $rc -ne $native_rc ]; then verdict="EXIT $rc"
	elif ! cmp -s "$tmp/native.out" "$tmp/run.out"; then verdict="OUTPUT DIFFERS"
	fi
	printf 'run %d: %s, %.2f s\n' "$i" "$verdict" "$(echo "$t1 - $t0" | bc)"
	if [ "$verdict" != ok ]; then
		bad=$((bad + 1))
		grep -v '^uzswap: ' "$tmp/run.err" | head -3 | sed 's/^/    /'
		[ -n "$keep" ] && cp "$tmp/run.out" "$keep/run$i.out" && cp "$tmp/run.err" "$keep/run$i.err"
	fi
done
echo "$bad of $runs runs differed"
[ $bad -eq 0 ]
