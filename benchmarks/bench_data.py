"""Benchmark: lexicon matching (one compiled, script-aware alternation per language) against a
naive baseline (one regex search per entry), on ParaDetox toxic sentences.

Prints the speed ratio (baseline time / ours) measured in this one run, and checks both find the
same English hits on word-bounded Latin entries (the baseline uses ``\\b``, so it is only
comparable there). Run: ``.venv/bin/python benchmarks/bench_data.py``.
"""
from __future__ import annotations

import re
import time

from interp.data.sources import load_lexicons, load_paradetox
from interp.data.lexicon import Lexicon, normalize


def main(n: int = 3000) -> dict[str, float]:
    """Return timings and the ratio for ``n`` sentences."""
    words = [w for w in load_lexicons(languages=["en"])["en"] if re.fullmatch(r"[a-z0-9 ]+", w.lower())]
    texts = [r.toxic for r in load_paradetox()[:n]]
    lex = Lexicon({"en": words})
    lex.hits("warm up", "en")
    naive = [(w, re.compile(r"\b" + re.escape(normalize(w)) + r"\b")) for w in words]

    t0 = time.perf_counter()
    ours = [set(lex.hits(t, "en")) for t in texts]
    t1 = time.perf_counter()
    base = [{w2 for w2, (w, p) in zip((normalize(w) for w, _ in naive), naive) if p.search(normalize(t))}
            for t in texts]
    t2 = time.perf_counter()
    agree = sum(a == b for a, b in zip(ours, base)) / len(texts)
    out = {"sentences": len(texts), "ours_s": t1 - t0, "baseline_s": t2 - t1, "speedup": (t2 - t1) / (t1 - t0),
           "agreement": agree}
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()))
    return out


if __name__ == "__main__":
    main()
