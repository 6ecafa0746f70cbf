"""Compare two benchmark runs row by row, ignoring timing and memory fields: a refactor must leave the rows identical.

    python scripts/compare_rows.py BEFORE/results.jsonl AFTER/results.jsonl

Prints the row counts and the differing rows (at most five, with the fields that differ); exits 1 if any differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: fields that measure the machine, not the result
IGNORED = frozenset({"sec_per_image", "peak_mem_mb", "seconds"})


def load(path: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {
        (r["task"], r["method"], r.get("variant"), r["id"]): {k: v for k, v in r.items() if k not in IGNORED}
        for r in rows
    }


def main(before: str, after: str) -> int:
    a, b = load(Path(before)), load(Path(after))
    differ = [k for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]
    print(f"{len(a)} rows before, {len(b)} after, {len(differ)} differ")
    for k in differ[:5]:
        old, new = a.get(k, {}), b.get(k, {})
        print(k, {f: (old.get(f), new.get(f)) for f in sorted(set(old) | set(new)) if old.get(f) != new.get(f)})
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
