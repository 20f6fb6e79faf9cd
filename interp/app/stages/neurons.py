"""Stage 2: toxic value vectors ranked by the probe, the activation filter, the vocabulary projection."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.core.artifacts import write_csv, write_json

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def stage_neurons(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from interp.data.sources import load_lexicons
    from interp.neurons.activations import as_neuron_list
    from interp.neurons.ranking import find_toxic_neurons
    from interp.neurons.vocab import project_to_vocab

    c = pipe.config.neurons
    filter_prompts = [p.text for p in pipe.filter_prompts()]
    neurons = find_toxic_neurons(pipe.base_model(), pipe.probe(), top_k=c.top_k, filter_prompts=filter_prompts,
                                 n_new_tokens=c.n_new_tokens, progress=pipe.progress)
    neurons.to_json(d / "neurons.json")
    kept = neurons.kept()
    chosen = neurons.analysed()
    from interp.crosslingual.token_languages import token_languages_from_data
    from interp.neurons.activations import tokenizer_of

    # Token languages measured on the data root's RTP-LX training split (+ gettext if the config says so).
    tl = token_languages_from_data(tokenizer_of(pipe.base_model()), pipe.data_root, pipe.config.languages,
                                   gettext=c.token_language_gettext, locale_dir=pipe.locale_dir)
    write_json(d / "token_languages.json", {**tl.meta, "evaluation_prompt_split": pipe.config.evaluation.prompt_split})
    proj = project_to_vocab(pipe.base_model(), chosen, k=c.vocab_k, lexicons=load_lexicons(pipe.data_root),
                            token_languages=tl)
    write_csv(d / "vocab_table.csv", proj.table)
    write_csv(d / "value_language_mass.csv", proj.language_mass)
    # C2's null: random non-candidate value vectors of the same layers, projected and tagged alike.
    from interp.neurons.vocab import random_value_vectors

    null_pairs = random_value_vectors(pipe.base_model(), sorted({int(l) for l, _ in as_neuron_list(chosen)}),
                                      as_neuron_list(neurons), max(10 * len(chosen), 100), seed=pipe.config.seed)
    if null_pairs:
        null = project_to_vocab(pipe.base_model(), null_pairs, k=c.vocab_k, lexicons=load_lexicons(pipe.data_root),
                                token_languages=tl)
        write_csv(d / "vocab_null.csv", null.table)
    return (f"{len(kept)} of {len(neurons)} candidate value vectors pass the activation filter "
            f"({len(filter_prompts)} English prompts)",
            {"neurons": pipe.rel(d / "neurons.json"), "vocab_table": pipe.rel(d / "vocab_table.csv"),
             "token_languages": pipe.rel(d / "token_languages.json"),
             **({"vocab_null": pipe.rel(d / "vocab_null.csv")} if (d / "vocab_null.csv").is_file() else {}),
             "value_mass": pipe.rel(d / "value_language_mass.csv")})
