#!/bin/bash
# Per-instruction profile of lb_xdp's JIT code while `lb-bench` runs one case.
#
# perf on these machines cannot annotate BPF JIT code (no libopcodes) and bpftool cannot dump
# it (no libbfd). This dumps the JIT image itself (jitdump.c: BPF_OBJ_GET_INFO_BY_FD), samples
# with perf, and prints each x86 instruction with the samples that landed on it.
#
#   tools/jit-profile/profile.sh "DSR TCP established"      (as root, quiet machine)
#
# Output: $OUT/annotated (samples, share, address, instruction), hottest first with
#   sort -k1 -n -r $OUT/annotated | head -40
# A sample is attributed to the instruction AFTER a stall (e.g. after a missing load).
set -euo pipefail
CASE="$1"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-/tmp/lb-jit-profile}
mkdir -p "$OUT"
gcc -O1 -o "$OUT/jitdump" "$ROOT/tools/jit-profile/jitdump.c"
cargo build --release -q -p lb-tests --bin lb-bench --manifest-path "$ROOT/Cargo.toml"
"$ROOT/target/release/lb-bench" 20000000 "$CASE" > "$OUT/bench.out" 2>&1 &
BENCH=$!
# Killed midway, lb-bench cannot remove its namespace (lbt-<pid>-<n>-bench): done here.
cleanup() {
    kill "$BENCH" 2>/dev/null || true
    wait "$BENCH" 2>/dev/null || true
    for ns in $(ip netns list | awk '{print $1}' | grep "^lbt-$BENCH-" || true); do
        ip netns del "$ns"
    done
}
trap cleanup EXIT
ID=
for _ in $(seq 1 60); do
    ID=$(bpftool prog show 2>/dev/null | grep "name lb_xdp " | awk -F: '{print $1}' | tail -1 || true)
    [ -n "$ID" ] && break
    sleep 0.5
done
[ -n "$ID" ] || { echo "lb_xdp never loaded"; cat "$OUT/bench.out"; exit 1; }
# Past the floor and harness measurements, into the case itself.
for _ in $(seq 1 60); do grep -q "^path" "$OUT/bench.out" && break; sleep 0.5; done
sleep 2.5
"$OUT/jitdump" "$ID" "$OUT/lb_xdp.bin" > "$OUT/ksyms"
perf record -F 20000 -a -o "$OUT/perf.data" -- sleep 3 > /dev/null 2>&1
# The image holds one function per ksym (the program and its BPF-to-BPF callees), back to back
# in ksym order, each loaded at its own address: disassemble each at its address.
: > "$OUT/lb_xdp.dis"
OFFSET=0
while read -r _ _ ADDR _ LEN; do
    dd if="$OUT/lb_xdp.bin" of="$OUT/func.bin" bs=1 skip="$OFFSET" count="$LEN" status=none
    objdump -D -b binary -mi386:x86-64 --adjust-vma="$ADDR" "$OUT/func.bin" >> "$OUT/lb_xdp.dis"
    OFFSET=$((OFFSET + LEN))
done < <(grep '^ksym ' "$OUT/ksyms")
perf script -i "$OUT/perf.data" -F ip,sym 2>/dev/null | awk '/_lb_xdp/{print $1}' | sort | uniq -c > "$OUT/hist"
python3 - "$OUT" <<'PY'
import re, sys
out = sys.argv[1]
hist = {int(ip, 16): int(c) for c, ip in (l.split() for l in open(f"{out}/hist"))}
total = max(sum(hist.values()), 1)
lines = []
for l in open(f"{out}/lb_xdp.dis"):
    m = re.match(r"\s*([0-9a-f]+):\s", l)
    if m:
        c = hist.get(int(m.group(1), 16), 0)
        lines.append(f"{c:6d} {100 * c / total:5.1f}% {l.rstrip()}")
open(f"{out}/annotated", "w").write("\n".join(lines) + "\n")
print(f"{sum(hist.values())} samples in lb_xdp; {out}/annotated")
PY
