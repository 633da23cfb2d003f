"""Copy the marked sections of a markdown file written on the GPU machine into the docs.

The device benches (``bench/device_perf.sh``) write their sections (``<!-- NAME:begin -->`` …
``<!-- NAME:end -->``) into a scratch ``benchmarks.md`` that comes back in an archive; this puts
each of them in place in ``docs/benchmarks.md`` (or ``--into``), replacing the old section of the
same name and leaving every other line alone.

    python tools/copy_sections.py runs/perf/benchmarks.md                 # every section
    python tools/copy_sections.py runs/perf/benchmarks.md --only long_window,train_throughput
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _report import BENCHMARKS_MD, write_section  # noqa: E402

SECTION = re.compile(r"<!-- (?P<name>[\w-]+):begin -->\n(?P<body>.*?)\n<!-- (?P=name):end -->", re.DOTALL)


def sections(text: str) -> dict[str, str]:
    """``{name: markdown}`` of every marked section in ``text``, in order."""
    return {m["name"]: m["body"] for m in SECTION.finditer(text)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="markdown with marked sections (from the device)")
    ap.add_argument("--into", type=Path, default=BENCHMARKS_MD, help="the docs file to update")
    ap.add_argument("--only", help="comma-separated section names (default: all)")
    args = ap.parse_args(argv)
    if not args.source.is_file():
        print(f"copy_sections: {args.source}: no such file", file=sys.stderr)
        return 2
    found = sections(args.source.read_text())
    wanted = args.only.split(",") if args.only else list(found)
    missing = [n for n in wanted if n not in found]
    if missing:
        print(f"copy_sections: --only {','.join(missing)}: not in {args.source} (it has {', '.join(found) or 'none'})",
              file=sys.stderr)
        return 2
    for name in wanted:
        write_section(args.into, name, found[name])
        print(f"{name}: {found[name].count(chr(10)) + 1} lines into {args.into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
