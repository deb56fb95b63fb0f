"""Compare every summary.json under two directory trees, outside their provenance.

    python tools/same_summaries.py BEFORE_DIR AFTER_DIR [--subset]

Pairs files by their path relative to each root (pytest's ``--basetemp`` trees: the
worker folder ``popen-gwN`` is dropped from the path, since tests land on either worker).
A pair matches when the two files are byte-identical once the ``provenance`` block is
removed (both re-serialised the way mcsim writes them: ``json.dumps(indent=1)``). With
``--subset`` (a newer schema that adds outputs), every value of the BEFORE file must be in
the AFTER file, identical, at the same place (dict keys may be added; ``schema`` may
differ). Prints each difference and the counts; exits 1 when any pair differs or a file has
no partner.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path


def key(root: Path, path: Path) -> str:
    rel = str(path.relative_to(root))
    rel = re.sub(r"popen-gw\d+/", "", rel)
    return re.sub(r"(\D)\d+(/|$)", r"\1\2", rel)  # pytest numbers tmp dirs per session


def without_provenance(path: Path) -> str:
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.pop("provenance", None)
    return json.dumps(doc, indent=1, allow_nan=False)


def contained(old, new, where: str = "", value_ulps: int = 0) -> str | None:
    """The first place where ``old`` is not contained in ``new`` (None: contained).

    ``value_ulps``: a quantile's ``value``, ``ci95_low`` and ``ci95_high`` may differ by
    this many units in the last place. They are bin edges (and a geometric interpolation
    inside a bin) computed on the host as powers of 10, and NumPy's vectorised ``power``
    differs by an ulp between CPUs (its AVX-512 loops against others: measured, the machine
    that wrote tests/data/v1 against this project's AMD EPYC). A bin edge is 0.46% from
    the next, so an ulp or two can never be another bin: the counts are still compared
    exactly."""
    if value_ulps and _edge_key(where) and isinstance(old, list) \
            and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            if not _within_ulps(a, b, value_ulps):
                return f"{where}/{i}"
        return None
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return where or "/"
        for k, v in old.items():
            if k in ("schema", "provenance"):
                continue
            if k not in new:
                return f"{where}/{k} (missing)"
            bad = contained(v, new[k], f"{where}/{k}", value_ulps)
            if bad:
                return bad
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) \
            and any(isinstance(a, (dict, list)) for a in old):
        # lists of records (observations): each old record contained in the new one
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            bad = contained(a, b, f"{where}/{i}", value_ulps)
            if bad:
                return bad
        return None
    if value_ulps and _edge_key(where) and _within_ulps(old, new, value_ulps):
        return None
    return None if old == new else (where or "/")


def _edge_key(where: str) -> bool:
    return where.rsplit("/", 1)[-1] in ("value", "ci95_low", "ci95_high")


def _within_ulps(a, b, ulps: int) -> bool:
    if a == b:
        return True
    if not (isinstance(a, float) and isinstance(b, float)) or not math.isfinite(a):
        return False
    return abs(a - b) <= ulps * math.ulp(max(abs(a), abs(b)))


def main(before: str, after: str, subset: bool = False) -> int:
    roots = Path(before), Path(after)
    files = [{}, {}]
    for side, root in enumerate(roots):
        for path in sorted(root.rglob("summary.json")):
            files[side].setdefault(key(root, path), []).append(path)
    same = differ = 0
    for k in sorted(set(files[0]) | set(files[1])):
        a, b = files[0].get(k, []), files[1].get(k, [])
        if len(a) != len(b):
            print(f"unpaired: {k} ({len(a)} before, {len(b)} after)")
            differ += 1
            continue
        if subset:
            for pa, pb in zip(sorted(a), sorted(b), strict=True):
                bad = contained(json.loads(pa.read_text()), json.loads(pb.read_text()))
                same, differ = (same + 1, differ) if bad is None else (same, differ + 1)
                if bad is not None:
                    print(f"DIFFERENT: {k} at {bad}")
            continue
        texts_a = sorted(without_provenance(p) for p in a)
        texts_b = sorted(without_provenance(p) for p in b)
        for ta, tb in zip(texts_a, texts_b, strict=True):
            if ta == tb:
                same += 1
            else:
                differ += 1
                print(f"DIFFERENT: {k}")
    what = "contained in their successors" if subset else "identical outside provenance"
    print(f"{same} summary.json {what}, {differ} different or unpaired")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], "--subset" in sys.argv[3:]))
