"""Cost per TB of raw logs for each compression preset, from a bench_codec.py --json result.

    python bench/cost_table.py RESULT.json [--object-mb 42]

Compute: Lambda GB-seconds to compress at the measured one-core throughput (the mean of the
real corpora's CPU MB/s, harmonic) at 1,769 MB, and at 3,538 MB (2 vCPUs) with the
measured thread speed-up. Storage: the archive (mean gzip bytes / raw bytes of the real
corpora) kept 1, 3 and 7 years in S3 Standard, Standard-IA or Glacier Deep Archive, in two
copies (archive bucket and customer bucket), plus transition requests and Deep Archive's
per-object index overhead; cross-region replication transfer once per TB if the customer
bucket is in another region.

Prices: us-east-1 list prices, from memory (no internet on the build machine), as the
author knew them in late 2026; check them before quoting.
"""

from __future__ import annotations

import argparse
import json
import sys

GB_SECOND = 0.0000166667  # Lambda x86_64, $ per GB-s
MEMORY_1VCPU = 1769 / 1024  # GB
MEMORY_2VCPU = 3538 / 1024
PER_GB_MONTH = {"Standard": 0.023, "Standard-IA": 0.0125, "Glacier Deep Archive": 0.00099}
TRANSITION_PER_1000 = {"Standard": 0.0, "Standard-IA": 0.01, "Glacier Deep Archive": 0.05}
# $ per object-month: Deep Archive bills 8 KB of index at the Standard rate and 32 KB at its own
DEEP_ARCHIVE_OBJECT_OVERHEAD = (8 * 1024 * 0.023 + 32 * 1024 * 0.00099) / 1e9
CROSS_REGION_PER_GB = 0.02
COPIES = 2
YEARS = (1, 3, 7)
REAL = ("nginx", "jvm", "postgres", "postgres-json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("result")
    ap.add_argument("--object-mb", type=float, default=42.0, help="mean raw MB per archive object")
    ap.add_argument("--speedup", type=float, help="2-thread speed-up to assume when the result has none")
    args = ap.parse_args()
    data = json.loads(open(args.result).read())
    table = data["corpora"]
    real = [n for n in REAL if n in table]
    if not real:
        raise SystemExit("no real corpus in the result")
    objects = 1e6 / args.object_mb  # per TB raw
    rows = []
    presets = list(table[real[0]]["presets"])
    naive_ratio = sum(table[n]["naive_gzip_bytes"] / table[n]["bytes"] for n in real) / len(real)
    naive_mbps = len(real) / sum(1 / table[n]["naive_cpu_mbps"] for n in real)
    candidates = [("naive (zlib 6)", naive_ratio, naive_mbps, None)]
    for p in presets:
        ratio = sum(table[n]["presets"][p]["gzip_bytes"] / table[n]["bytes"] for n in real) / len(real)
        mbps = len(real) / sum(1 / table[n]["presets"][p]["cpu_mbps"] for n in real)
        speedups = [table[n]["default_threads"]["wall_ratio"] / table[n]["presets"]["default"]["speed_ratio"]
                    for n in real if p == "default" and "default_threads" in table[n]]
        if p == "default" and not speedups and args.speedup:
            speedups = [args.speedup]
        candidates.append((p, ratio, mbps, sum(speedups) / len(speedups) if speedups else None))
    print(f"real corpora: {', '.join(real)}; mean archive {args.object_mb:g} MB raw "
          f"({objects:,.0f} objects per TB); {COPIES} copies\n")
    head = "| preset | archive GB per TB raw | one-core MB/s | compute $/TB (1,769 MB) |"
    sep = "|---|---:|---:|---:|"
    for cls in PER_GB_MONTH:
        for y in YEARS:
            head += f" {cls} {y} y |"
            sep += "---:|"
    head += " cross-region transfer |"
    sep += "---:|"
    print(head)
    print(sep)
    for name, ratio, mbps, _ in candidates:
        gb = 1000 * ratio
        compute = MEMORY_1VCPU * 1e6 / mbps * GB_SECOND
        cells = [f"{name}", f"{gb:.1f}", f"{mbps:.0f}", f"${compute:.3f}"]
        for cls, price in PER_GB_MONTH.items():
            for y in YEARS:
                months = 12 * y
                storage = gb * price * months * COPIES
                fees = objects * COPIES * TRANSITION_PER_1000[cls] / 1000
                if cls == "Glacier Deep Archive":
                    fees += objects * COPIES * DEEP_ARCHIVE_OBJECT_OVERHEAD * months
                cells.append(f"${compute + storage + fees:.2f}")
        cells.append(f"${gb * CROSS_REGION_PER_GB:.2f}")
        rows.append(cells)
        print("| " + " | ".join(cells) + " |")
    print("\n(each storage cell = compute + storage of two copies + transition/PUT-class requests "
          "+ Deep Archive's 40 KB per-object index; cross-region transfer is once per TB, if used)")
    for name, _, mbps, speedup in candidates:
        if speedup:
            one = MEMORY_1VCPU * 1e6 / mbps * GB_SECOND
            two = MEMORY_2VCPU * 1e6 / (mbps * speedup) * GB_SECOND
            print(f"\n{name} at 3,538 MB (2 vCPUs): {speedup:.2f}x the 1-vCPU speed with 2 threads, "
                  f"compute ${two:.3f}/TB against ${one:.3f} at 1,769 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
