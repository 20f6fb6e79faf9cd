"""The public API a notebook user sees: ``dir(interp)`` lists every export and each one resolves, IDEs
see the same names (``TYPE_CHECKING``), ``load_model`` is typed, and every exported function is called
under jaxtyping's runtime checking (``jaxtyped`` + ``beartype``) on a tiny model, so a shape, dtype or
type annotation that disagrees with what the code takes or returns fails here.

Two strengths: each export wrapped at the call (in process), and the whole tour again in a fresh
interpreter with jaxtyping's import hook on every ``interp`` module, so the functions the exports
call inside are checked as well.
"""
from __future__ import annotations

import ast
import contextlib
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
#: beartype as static checkers read hints: an int is a valid float (PEP 484's numeric tower).
TYPECHECKER = "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))"


def checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``fn`` under jaxtyping's runtime checking of its annotations (shapes, dtypes, types)."""
    import beartype
    from jaxtyping import jaxtyped

    return jaxtyped(typechecker=beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True)))(fn)


def exercise_public_api(check: Callable[[Callable[..., Any]], Callable[..., Any]]) -> set[str]:
    """Call every exported function of ``interp`` (through ``check``) on a tiny GPT-2; return the names called."""
    import pandas as pd
    from peft import LoraConfig, get_peft_model

    import interp
    from tiny_models import make_model, make_tokenizer

    called: set[str] = set()

    def call(name: str, *args: Any, **kwargs: Any) -> Any:
        called.add(name)
        return check(getattr(interp, name))(*args, **kwargs)

    tok = make_tokenizer()
    model = call("load_model", make_model("gpt2", len(tok)), tokenizer=tok)
    adapter = call("get_adapter", model)
    assert isinstance(call("model_fingerprint", model), str)
    probe = torch.randn(adapter.d_model)
    assert call("probe_direction", probe, adapter.d_model).shape == (adapter.d_model,)
    neurons = call("find_toxic_neurons", model, probe, top_k=6, filter_prompts=["I want to", "hello"],
                   n_new_tokens=3, progress=False)
    pairs = neurons.layers_neurons()
    acts = call("collect_generation_activations", model, ["I want to", "you are"], pairs, n_new_tokens=3)
    assert acts.shape == (2, 3, len(pairs))
    proj = call("project_to_vocab", model, neurons, k=5)
    assert len(proj.table) == 5 * len(pairs)
    prompts = {"en": ["I want to", "hello"], "de": ["Ich will nach"], "fr": ["Je veux"]}
    keys = call("key_activations", {"base": model}, pairs, prompts, n_new_tokens=3, n_boot=10, progress=False)
    boost = interp.NeuronIntervention(pairs[:2], "add", 5.0)
    with call("intervene", model, boost) as m:
        assert m is model
    assert len(call("generate_with_intervention", model, ["I want to"], boost, 3)) == 1
    sweep = call("intervention_sweep", model, pairs[:2], prompts, offsets=(0, -1), max_new_tokens=3,
                 score_fn=lambda texts, lang: [0.5] * len(texts), progress=False)
    assert len(sweep) == 2 * len(prompts)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    assert 0 <= call("retrieval_accuracy", a, b) <= 1 and -1 <= call("mean_paired_cosine", a, b) <= 1
    reps = call("layer_representations", model, ["hello there", "I want"], progress=False, cache=False)
    assert reps.shape == (adapter.n_layers + 1, 2, adapter.d_model)
    parallel = {"en": ["hello there", "I want to go", "a nice day"], "de": ["hallo", "Ich will gehen", "schöner Tag"],
                "fr": ["salut", "je veux aller", "beau jour"]}
    retrieval = call("bilingual_retrieval", model, parallel, progress=False, cache=False)
    assert call("parallel_texts", "translated200", ["en", "de"], limit=2)["de"]
    ratio = call("key_ratio_from_activations", keys.summary)
    signals = call("dual_multilinguality", key_ratio=ratio, retrieval=retrieval.per_language)
    drops = pd.DataFrame({"lang": ["en", "de", "fr", "ja"], "emt_reduction_pct": [10.0, 4.0, 2.0, 1.0]})
    more = pd.DataFrame({"lang": ["ja"], "key_ratio": [0.3], "retrieval_acc": [0.1],
                         "mean_paired_cosine": [0.2]})
    stats = call("correlate", pd.concat([signals, more], ignore_index=True), drops, n_boot=20, n_perm=20,
                 outcomes=["emt_reduction_pct"])
    assert set(stats["signal"]) >= {"key_ratio", "retrieval_acc"}
    assert call("normalize_language", "ZH-Hans") == "zh" and call("data_root").is_dir()
    # An adapter-carrying bridge: base and tuned views share one set of weights.
    lora = get_peft_model(make_model("gpt2", len(tok)), LoraConfig(r=2, target_modules=["c_fc"], fan_in_fan_out=True,
                                                                 init_lora_weights=False))
    tuned = call("load_model", lora, tokenizer=tok)
    base_view, tuned_view = call("base_and_tuned", tuned)
    with call("adapter_disabled", tuned) as m:
        assert m is tuned
    assert call("model_fingerprint", base_view) != call("model_fingerprint", tuned_view)
    return called


def _exports() -> dict[str, str]:
    import interp

    return dict(interp._EXPORTS)


def test_dir_lists_every_export_and_each_resolves() -> None:
    import interp

    names = dir(interp)
    assert set(_exports()) <= set(names) and interp.__all__ == sorted(_exports())
    assert not {"importlib", "sys", "Any", "annotations"} & set(names)  # no implementation details
    for name, module in _exports().items():
        obj = getattr(interp, name)
        assert obj is getattr(__import__(module, fromlist=[name]), name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        interp.nope  # noqa: B018


def test_submodule_of_the_same_name_never_shadows_an_export() -> None:
    """``interp.key_activations`` is the function, even after the submodule ``interp.neurons.key_activations`` is imported."""
    import importlib

    import interp

    importlib.import_module("interp.neurons.key_activations")
    assert callable(interp.key_activations) and interp.key_activations.__name__ == "key_activations"
    res = subprocess.run([sys.executable, "-c", "import interp.neurons.key_activations, interp; "
                          "print(type(interp.key_activations).__name__)"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.stdout.strip() == "function", res.stderr[-2000:]


def test_type_checking_block_reexports_exactly_the_lazy_names() -> None:
    """What IDEs see (``if TYPE_CHECKING:`` imports) is what ``__getattr__`` serves, module for module."""
    tree = ast.parse((ROOT / "interp" / "__init__.py").read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING")
    seen = {alias.asname or alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}
    assert seen == _exports()


def test_load_model_returns_a_typed_bridge() -> None:
    from transformer_lens.model_bridge import TransformerBridge

    import interp
    from tiny_models import make_model, make_tokenizer

    hint = typing.get_type_hints(interp.load_model)["return"]
    assert hint is TransformerBridge
    assert isinstance(interp.load_model(make_model("gpt2", 320), tokenizer=make_tokenizer()), hint)


def test_every_exported_function_passes_runtime_type_checking() -> None:
    import inspect

    import interp

    called = exercise_public_api(checked)
    functions = {n for n in _exports() if inspect.isfunction(getattr(interp, n))}
    assert functions - called == set(), "exported functions not exercised under jaxtyping"


def test_runtime_checking_catches_a_wrong_shape_and_a_wrong_index_dtype() -> None:
    """The checks can fail: mismatched ``n d`` shapes, and float indices where ``Int[Tensor, ...]`` is annotated."""
    from jaxtyping import TypeCheckError

    import interp
    from interp.neurons.ranking import rank_value_vectors

    with pytest.raises(TypeCheckError):
        checked(interp.retrieval_accuracy)(torch.randn(6, 8), torch.randn(5, 8))
    values, direction = torch.randn(2, 4, 3), torch.randn(3)
    cos, layers, units = checked(rank_value_vectors)(values, direction, 3)
    assert layers.dtype == units.dtype == torch.int64
    index_hint = typing.get_type_hints(rank_value_vectors)["return"].__args__[1]
    assert isinstance(layers, index_hint) and not isinstance(layers.float(), index_hint)


def test_import_hook_checks_every_interp_function_on_the_tour(tmp_path: Path) -> None:
    """Rerun the tour with jaxtyping's import hook on all of ``interp``: private helpers are checked too."""
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
        "from jaxtyping import install_import_hook\n"
        f"with install_import_hook(['interp'], {TYPECHECKER!r}):\n"
        "    import interp.model.loading\n"
        "    assert hasattr(interp.model.loading.load_model, '__wrapped__'), 'import hook inactive'\n"
        "    from test_public_api import exercise_public_api\n"
        "    print(len(exercise_public_api(lambda f: f)), 'exports called')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "exports called" in res.stdout
