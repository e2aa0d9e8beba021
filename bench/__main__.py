"""Run every ``bench/bench_*.py`` module (or ``--only NAME``), print each figure beside its
baseline, and merge the figures into ``bench/results.json``.

A module exposes ``run() -> list[dict]``; each dict has ``name, value, unit, baseline,
ratio, target`` (see ``bench.common.result``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path

RESULTS = Path(__file__).with_name("results.json")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--only", action="append", help="run only bench/bench_NAME.py (repeatable)")
    args = ap.parse_args()
    here = [str(Path(__file__).parent)]
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(here)
                   if m.name.startswith("bench_"))
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            print(f"unknown benchmark(s): {sorted(unknown)}; known: {names}", file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    merged = {r["name"]: r for r in existing}
    failed = False
    for name in names:
        print(f"\n== bench {name} ==", flush=True)
        t0 = time.monotonic()
        try:
            results = importlib.import_module(f"bench.bench_{name}").run()
        except Exception:
            traceback.print_exc()
            failed = True
            continue
        for r in results:
            merged[r["name"]] = r
            base = "-" if r.get("baseline") is None else f"{r['baseline']:.4g}"
            ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.3g}"
            print(f"  {r['name']:<24} {r['value']:>12.4g} {r['unit']:<8} baseline {base:>10}"
                  f"  ratio {ratio:>6}  target {r.get('target') or '-'}"
                  + (f"  ({r['note']})" if r.get("note") else ""), flush=True)
        print(f"  ({time.monotonic() - t0:.0f} s)")
        # after each module: a run stopped later keeps the figures it finished
        RESULTS.write_text(json.dumps(sorted(merged.values(), key=lambda r: r["name"]),
                                      indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
