#!/bin/bash
# tools/quickstart.sh - from a fresh Debian 12 checkout to a demo of uzswap.
#
#   1. installs the build dependencies with apt-get (as root, or with sudo),
#      if any is missing;
#   2. generates ./configure (autoreconf -fi) if it is missing or stale;
#   3. configures in ./build (once) and builds with make -j$(nproc);
#   4. runs examples/cache twice, without uzswap and under uzswap with
#      UZSWAP_LIMIT at 25% of its data and UZSWAP_STATS=1, and prints a
#      comparison: the time of each phase, the peak RSS, and whether the
#      checksums of the data match.
#
# It can be run again at any time, from any directory; steps already done
# are skipped.  Settings, from the environment:
#   DEMO_SIZE=MIB           data set of the demo (default: 512, less on a
#                           machine with under 2 GiB available)
#   DEMO_LIMIT_PERCENT=P    UZSWAP_LIMIT as a share of it (default 25)
#   DEMO_OPS=N              operations in its hot phase (default 10000000)
#   SKIP_DEPS=1             do not check or install packages
#
# Exit status: 0 the demo ran and the checksums match, 1 otherwise.
set -euo pipefail

say() { printf '\n=== %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

repo=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$repo"
[ -f configure.ac ] && [ -f lib/uzswap.h ] || die "$repo does not look like the uzswap source tree"

# ------------------------------------------------------------ dependencies
deps=(build-essential autoconf automake libtool pkg-config
      liblzo2-dev libnuma-dev libcriterion-dev)

as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root for: $*  (run as root, or install sudo)"
	fi
}

if [ "${SKIP_DEPS:-}" != 1 ]; then
	say "dependencies"
	command -v apt-get >/dev/null && command -v dpkg-query >/dev/null ||
		die "no apt-get here: install the equivalents of ${deps[*]} by hand, then run with SKIP_DEPS=1"
	missing=()
	for p in "${deps[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if [ ${#missing[@]} = 0 ]; then
		echo "all installed: ${deps[*]}"
	else
		echo "installing: ${missing[*]}"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends "${missing[@]}"
	fi
fi

# ------------------------------------------------------------------- build
say "build"
stale=
if [ ! -x configure ]; then
	stale=1
else
	for f in configure.ac Makefile.am m4/*.m4; do
		[ -e "$f" ] && [ "$f" -nt configure -o "$f" -nt Makefile.in ] && stale=1
	done
fi
if [ -n "$stale" ]; then
	echo "autoreconf -fi"
	autoreconf -fi
else
	echo "./configure is up to date"
fi
mkdir -p build
if [ ! -f build/Makefile ]; then
	echo "configuring in build/"
	(cd build && ../configure)
else
	echo "build/ is configured (make reconfigures it if needed)"
fi
make -C build -j"$(nproc)"

cache=$repo/build/examples/cache
shim=$repo/build/preload/.libs/libuzswap_preload.so
tool=$repo/build/tools/uzswap
[ -x "$cache" ] && [ -f "$shim" ] || die "the build did not produce $cache and $shim"

# -------------------------------------------------------------------- demo
avail_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
if [ -n "${DEMO_SIZE:-}" ]; then
	size=$DEMO_SIZE
elif [ "${avail_mib:-0}" -ge 2048 ]; then
	size=512
else
	# A quarter of what is available, in steps of 64 MiB, at least 64.
	size=$(( (${avail_mib:-256} / 4) / 64 * 64 ))
	[ "$size" -ge 64 ] || size=64
fi
pct=${DEMO_LIMIT_PERCENT:-25}
ops=${DEMO_OPS:-10000000}
limit=$(( size * pct / 100 ))
args=(--size "$size" --hot-percent 5 --ops "$ops")
out=$(mktemp -d "${TMPDIR:-/tmp}/uzswap-quickstart.XXXXXX")
trap 'rm -rf "$out"' EXIT

say "demo: examples/cache ${args[*]}, without uzswap"
env -u LD_PRELOAD "$cache" "${args[@]}" | tee "$out/base.out" ||
	die "examples/cache failed on its own"

say "demo: the same under uzswap, UZSWAP_LIMIT=${limit}M ($pct% of the data)"
if [ -x "$tool" ]; then
	echo "\$ UZSWAP_PRELOAD_PATH=build/preload/.libs/libuzswap_preload.so" \
		"build/tools/uzswap run --limit ${limit}M --stats -- build/examples/cache ${args[*]}"
	run=(env UZSWAP_PRELOAD_PATH="$shim" "$tool" run --limit "${limit}M" --stats --)
else
	echo "\$ UZSWAP_LIMIT=${limit}M UZSWAP_STATS=1" \
		"LD_PRELOAD=build/preload/.libs/libuzswap_preload.so build/examples/cache ${args[*]}"
	run=(env UZSWAP_LIMIT="${limit}M" UZSWAP_STATS=1 LD_PRELOAD="$shim")
fi
rc=0
"${run[@]}" "$cache" "${args[@]}" 2> "$out/uz.err" | tee "$out/uz.out" || rc=$?
cat "$out/uz.err" >&2

# -------------------------------------------------------------- comparison
say "comparison"
field() {   # field FILE PHASE N: field N of that phase's line
	awk -v p="$2" -v n="$3" '$1 == "phase" && $2 == p { print $n }' "$1"
}
printf '%-10s %14s %14s %8s\n' "" "without" "with uzswap" "ratio"
for p in $(awk '$1 == "phase" { print $2 }' "$out/base.out"); do
	b=$(field "$out/base.out" "$p" 3)
	u=$(field "$out/uz.out" "$p" 3)
	printf '%-10s %12s s %12s s %8s\n' "$p" "$b" "${u:--}" \
		"$(awk -v b="$b" -v u="$u" 'BEGIN { if (u != "" && b > 0) printf "%.2fx", u / b; else print "-" }')"
done
peak() { awk '$1 == "phase" { v = $9 } END { print v }' "$1"; }
bp=$(peak "$out/base.out")
up=$(peak "$out/uz.out")
printf '%-10s %10s MiB %10s MiB   (limit %d MiB)\n' "peak RSS" "$bp" "${up:--}" "$limit"
bs=$(sed -n 's/^checksum //p' "$out/base.out")
us=$(sed -n 's/^checksum //p' "$out/uz.out")
if [ -n "$bs" ] && [ "$bs" = "$us" ] && [ "$rc" = 0 ]; then
	printf '%-10s %14s %14s   match\n' checksum "$bs" "$us"
else
	printf '%-10s %14s %14s   MISMATCH (exit %d)\n' checksum "$bs" "${us:--}" "$rc"
	exit 1
fi
if ! grep -q '^uzswap: managed' "$out/uz.err"; then
	echo
	echo "note: no uzswap summary above, so uzswap did not run (its message says why;"
	echo "see README.md, Running, for what it needs)"
fi
echo
echo "Next: make -C build check    (the test suite); examples/README.md explains the output."
