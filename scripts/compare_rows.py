"""Compare two bench runs' results.jsonl row by row, ignoring timing and memory fields (a refactor must leave the
rows identical): python scripts/compare_rows.py BEFORE/results.jsonl AFTER/results.jsonl"""

import json
import sys

IGN = {"sec_per_image", "peak_mem_mb", "seconds"}


def load(p):
    rows = [json.loads(l) for l in open(p) if l.strip()]
    return {
        (r["task"], r["method"], r.get("variant"), r["id"]): {k: v for k, v in r.items() if k not in IGN} for r in rows
    }


a, b = load(sys.argv[1]), load(sys.argv[2])
diff = [k for k in a if a[k] != b.get(k)]
print(f"{len(a)} rows before, {len(b)} after, {len(diff)} differ")
for k in diff[:5]:
    print(
        k, {f: (a[k].get(f), b[k].get(f)) for f in set(a[k]) | set(b.get(k, {})) if a[k].get(f) != b.get(k, {}).get(f)}
    )
