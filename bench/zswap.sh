#!/bin/bash
# bench/zswap.sh - kernel zswap swap-in latency on this machine, to be read
# next to bench/fault's figures for uzswap (issue 3).  This script owns the
# machine set-up and its undoing; bench/zswap_bench.c owns the measurement.
#
# It sets up, and at exit undoes (trap):
#   - a swap file (default 1 GiB in /var/tmp), swapped on at top priority;
#   - zswap enabled with an LZO compressor ("lzo", else "lzo-rle"), zsmalloc
#     as zpool when the kernel still lets one choose (Linux < 6.15), and its
#     shrinker off so nothing is written back to the disk;
#   - vm.page-cluster=0, so every fault decompresses exactly its own page
#     (a second pass keeps the original value: swap readahead, see README);
#   - a cgroup v2 memory cgroup for the benchmark, when the memory controller
#     is on cgroup v2 (on a hybrid v1/v2 host it is not, and the benchmark
#     runs without one: MADV_PAGEOUT needs none);
# then runs zswap_bench, which pushes N heap-like pages out with
# MADV_PAGEOUT, checks they are in zswap and not on the disk, and times each
# page's first touch, with a native first-touch fault and LZO decompression
# alone as baselines, reclaim and touch on the same vCPU and on different
# ones.  Without zswap in the kernel it measures swap-in from zram instead,
# and says so.
#
# Usage:
#   bench/zswap.sh [OPTIONS]
#
# Options:
#   --build DIR     build tree holding bench/zswap_bench, built first with
#                   `make bench/zswap_bench` if missing
#                   (default: $UZSWAP_BUILD, else ./build in the repo)
#   --pages N       pages per measurement (default 8192, as bench/fault)
#   --rounds R      rounds; medians are printed (default 5)
#   --dir DIR       where the swap file goes (default /var/tmp)
#   --size MIB      swap file size (default 1024)
#   --zram          measure zram swap-in even though zswap exists
#   --no-readahead-pass   skip the pass at the original vm.page-cluster
#   -h, --help      this text
#
# Exit status: 0 measured; 1 pages did not go where expected; 2 something
# needed is missing (one line says what) or bad usage.  Run by hand, as
# root, on an otherwise idle machine; not part of `make check`.
set -euo pipefail

repo=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
build=${UZSWAP_BUILD:-$repo/build}
pages=8192 rounds=5 dir=/var/tmp size_mib=1024 force_zram= ra_pass=1

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
missing() { echo "zswap.sh: MISSING: $*" >&2; exit 2; }
need_arg() { [ $# -ge 2 ] || missing "$1 needs a value (try --help)"; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }

while [ $# -gt 0 ]; do
	case $1 in
	--build) need_arg "$@"; build=$2; shift ;;
	--pages) need_arg "$@"; pages=$2; shift ;;
	--rounds) need_arg "$@"; rounds=$2; shift ;;
	--dir) need_arg "$@"; dir=$2; shift ;;
	--size) need_arg "$@"; size_mib=$2; shift ;;
	--zram) force_zram=1 ;;
	--no-readahead-pass) ra_pass= ;;
	-h|--help) usage; exit 0 ;;
	*) missing "unknown option \"$1\" (try --help)" ;;
	esac
	shift
done
for v in pages rounds size_mib; do
	is_uint "${!v}" || missing "--${v%_mib} needs a whole number above 0"
done
[ "$(id -u)" -eq 0 ] || missing "must run as root (swapon, zswap parameters)"

bench=$build/bench/zswap_bench
if [ ! -x "$bench" ]; then
	[ -f "$build/Makefile" ] || missing "no build tree at $build (use --build DIR)"
	make -C "$build" bench/zswap_bench >/dev/null || missing "cannot build $bench"
fi

zs=/sys/module/zswap/parameters
backend=zswap
if [ -n "$force_zram" ] || [ ! -d $zs ]; then
	# zswap may be a module on other kernels; this one has it built in.
	if [ -z "$force_zram" ] && command -v modprobe >/dev/null &&
	   modprobe zswap 2>/dev/null && [ -d $zs ]; then
		:
	else
		backend=zram
		[ -n "$force_zram" ] || echo "note: no zswap in this kernel: measuring swap-in from zram instead"
		[ -e /sys/class/zram-control/hot_add ] ||
			{ command -v modprobe >/dev/null && modprobe zram 2>/dev/null; } ||
			missing "neither zswap nor zram in this kernel"
		[ -e /sys/class/zram-control/hot_add ] || missing "neither zswap nor zram in this kernel"
	fi
fi

# ------------------------------------------------------------ undo at exit
# Each step pushes its own undo command; cleanup runs them newest first.
undo=()
cleanup() {
	local i
	trap - EXIT INT TERM
	for ((i = ${#undo[@]} - 1; i >= 0; i--)); do
		eval "${undo[i]}" || echo "zswap.sh: warning: undo failed: ${undo[i]}" >&2
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# set FILE VALUE: write a sysfs/procfs value, restoring the old one at exit.
set_param() {
	local old
	old=$(cat "$1")
	[ "$old" = "$2" ] && return 0
	echo "$2" >"$1" 2>/dev/null || return 1
	undo+=("echo '$old' >'$1'")
}

# ------------------------------------------------------------- the backend
if [ $backend = zswap ]; then
	# Compressor before enabling, so no page is stored with another one.
	comp=
	for c in lzo lzo-rle; do
		if set_param $zs/compressor $c && [ "$(cat $zs/compressor)" = $c ]; then
			comp=$c
			break
		fi
	done
	[ -n "$comp" ] || missing "zswap accepts neither lzo nor lzo-rle as compressor"
	if [ -e $zs/zpool ]; then
		set_param $zs/zpool zsmalloc || missing "zswap does not accept zpool=zsmalloc"
		zpool=zsmalloc
	else
		zpool="zsmalloc (the only pool since Linux 6.15)"
	fi
	# The shrinker writes cold zswap pages back to the disk: keep it off.
	[ ! -e $zs/shrinker_enabled ] || set_param $zs/shrinker_enabled N
	set_param $zs/enabled Y || missing "cannot enable zswap"
	echo "zswap: compressor $comp, zpool $zpool, max_pool_percent $(cat $zs/max_pool_percent)"

	swapfile=$dir/uzswap-zswap-bench.$$.swap
	[ ! -e "$swapfile" ] || missing "$swapfile already exists"
	undo+=("rm -f '$swapfile'")
	# fallocate first (fast); some filesystems refuse swap on unwritten
	# extents, so fall back to writing zeros.
	ok=
	for how in fallocate dd; do
		rm -f "$swapfile"
		if [ $how = fallocate ]; then
			fallocate -l "${size_mib}M" "$swapfile" 2>/dev/null || continue
		else
			dd if=/dev/zero of="$swapfile" bs=1M count="$size_mib" status=none || continue
		fi
		chmod 600 "$swapfile"
		mkswap "$swapfile" >/dev/null 2>&1 || continue
		if swapon --priority 32767 "$swapfile" 2>/dev/null; then
			ok=1
			break
		fi
	done
	[ -n "$ok" ] || missing "cannot swapon a file in $dir (try --dir elsewhere)"
	undo+=("swapoff '$swapfile'")
	echo "swap: $swapfile, ${size_mib} MiB ($(stat -f -c %T "$dir"))"
	expect=zswap
else
	id=$(cat /sys/class/zram-control/hot_add) || missing "cannot add a zram device"
	dev=/dev/zram$id
	undo+=("echo $id >/sys/class/zram-control/hot_remove")
	comp=
	for c in lzo lzo-rle; do
		if echo $c >/sys/block/zram$id/comp_algorithm 2>/dev/null; then
			comp=$c
			break
		fi
	done
	[ -n "$comp" ] || missing "zram accepts neither lzo nor lzo-rle"
	echo "${size_mib}M" >/sys/block/zram$id/disksize
	undo+=("echo 1 >/sys/block/zram$id/reset")
	mkswap "$dev" >/dev/null 2>&1 || missing "mkswap $dev failed"
	swapon --priority 32767 "$dev" || missing "cannot swapon $dev"
	undo+=("swapoff $dev")
	# zswap, if present and enabled, would catch the pages before zram.
	[ ! -d $zs ] || set_param $zs/enabled N
	echo "zram: $dev, ${size_mib} MiB, compressor $comp (zsmalloc)"
	expect=swap
fi
others=$(awk 'NR > 1 && $1 != "'"${swapfile:-$dev}"'" {print $1}' /proc/swaps)
[ -z "$others" ] || echo "note: other swap areas are on: $others (ours has top priority)"

# ------------------------------------------------------------------ cgroup
cg=
cgparent=$(findmnt -n -t cgroup2 -o TARGET | head -n1 || true)
if [ -n "$cgparent" ] && grep -qw memory "$cgparent/cgroup.controllers"; then
	if ! grep -qw memory "$cgparent/cgroup.subtree_control"; then
		echo +memory >"$cgparent/cgroup.subtree_control" ||
			missing "cannot enable the memory controller in $cgparent"
		undo+=("echo -memory >'$cgparent/cgroup.subtree_control'")
	fi
	cg=$cgparent/uzswap-zswap-bench.$$
	mkdir "$cg"
	# rmdir needs the cgroup empty: the benchmark has exited by then.
	undo+=("rmdir '$cg'")
	echo "cgroup: $cg (no memory.max: faults must not reclaim)"
else
	echo "note: no cgroup v2 memory controller here (memory is on the cgroup v1" \
	     "hierarchy); running without a cgroup: MADV_PAGEOUT needs none"
fi

# --------------------------------------------------------------- the runs
run_bench() {
	if [ -n "$cg" ]; then
		# Join the cgroup, then become the benchmark.
		sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
			"$bench" --pages "$pages" --rounds "$rounds" --expect $expect
	else
		"$bench" --pages "$pages" --rounds "$rounds" --expect $expect
	fi
}
cg_stat() {
	[ -n "$cg" ] || return 0
	echo "cgroup memory.stat: $(grep -E '^(zswpout|zswpin|pswpout|pswpin) ' \
		"$cg/memory.stat" | tr '\n' ' ')"
}

# Other work on a 2-vCPU machine shows up straight in p99 and max.
read -r load1 _ </proc/loadavg
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
	echo "note: load average $load1: timings are only meaningful on an idle machine"
fi
cluster=/proc/sys/vm/page-cluster
orig_cluster=$(cat $cluster)
status=0
set_param $cluster 0
echo
echo "=== $backend swap-in, vm.page-cluster=0 (no readahead: one page decompressed per fault)"
run_bench || status=$?
cg_stat
if [ -n "$ra_pass" ] && [ "$orig_cluster" != 0 ] && [ $status -ne 2 ]; then
	echo "$orig_cluster" >$cluster
	echo
	echo "=== $backend swap-in, vm.page-cluster=$orig_cluster (the default: swap readahead;" \
	     "sequential touches then mostly hit the swap cache)"
	run_bench || { s=$?; [ $status -ne 0 ] || status=$s; }
	cg_stat
fi
exit $status
