"""Tiny random-init models of every family the paper uses, built from configs (no hub access).

Used across the suite: ``make_tokenizer()`` trains a small byte-level BPE in well under a second,
``make_model(family)`` builds GPT-2 (mGPT), BLOOM, Llama or Cohere (Aya), or one of the newer
families (Qwen2, Mistral, Gemma-2, XGLM; GQA where the family has it) with that vocabulary,
and ``save_tiny(family, dir)`` writes a ``save_pretrained`` directory that ``load_model`` reads.
"""
from __future__ import annotations

from pathlib import Path

import torch
import transformers as T
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

FAMILIES = ("gpt2", "bloom", "llama", "cohere")
# Newer multilingual families, served through TransformerLens's mapping with no table entry of ours.
EXTRA_FAMILIES = ("qwen2", "mistral", "gemma2", "xglm", "cohere2")
ALL_FAMILIES = FAMILIES + EXTRA_FAMILIES
GATED = ("llama", "cohere", "qwen2", "mistral", "gemma2", "cohere2")

TINY_TEXT = [
    "the quick brown fox jumps over the lazy dog", "I want to go home now", "you are a stupid idiot",
    "Je veux aller à la maison", "Yo quiero comer", "我想回家", "Ich will nach Hause", "Я хочу домой",
    "私は家に帰りたい", "나는 집에 가고 싶다", "أريد أن أذهب", "मैं घर जाना चाहता हूँ", "this is a nice day",
    "what the hell is wrong with you", "Chcę iść do domu", "Jag vill gå hem", "Ik wil naar huis",
]


#: Families whose released tokenizers prepend BOS themselves (Llama, Aya); mGPT and BLOOM add none.
NATIVE_BOS_FAMILIES = ("llama", "cohere")


def make_tokenizer(vocab_size: int = 320, *, adds_bos: bool = False) -> T.PreTrainedTokenizerFast:
    """Return a small byte-level BPE tokenizer with bos/eos/pad tokens (prepending BOS if ``adds_bos``)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TINY_TEXT * 4, trainer)
    out = T.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                    pad_token="<pad>", unk_token=None)
    if adds_bos:
        out.add_bos_token = True
    return out


def family_tokenizer(family: str, vocab_size: int = 320) -> T.PreTrainedTokenizerFast:
    """Return the tiny tokenizer with ``family``'s native BOS behaviour (like its real checkpoints)."""
    return make_tokenizer(vocab_size, adds_bos=family in NATIVE_BOS_FAMILIES)


def make_config(family: str, vocab_size: int, *, n_layers: int = 2, d_model: int = 32, d_mlp: int = 64) -> T.PretrainedConfig:
    """Return a tiny config of ``family``."""
    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    if family == "gpt2":
        return T.GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=2, n_positions=128, n_inner=d_mlp, **common)
    if family == "bloom":  # BLOOM's MLP is 4 * hidden by construction
        return T.BloomConfig(hidden_size=d_model, n_layer=n_layers, n_head=2, **common)
    if family == "llama":
        return T.LlamaConfig(hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, **common)
    if family == "cohere":
        return T.CohereConfig(hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
                              num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                              logit_scale=0.0625, **common)
    gqa = dict(hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers, num_attention_heads=2,
               num_key_value_heads=1, max_position_embeddings=128, **common)
    if family == "qwen2":
        return T.Qwen2Config(**gqa)
    if family == "mistral":
        return T.MistralConfig(sliding_window=None, **gqa)
    if family == "gemma2":  # a small soft cap so that tests which ignore it fail
        return T.Gemma2Config(head_dim=d_model // 2, final_logit_softcapping=0.5, attn_logit_softcapping=50.0,
                              query_pre_attn_scalar=d_model // 2, sliding_window=64, **gqa)
    if family == "cohere2":  # Aya Expanse: Cohere's parallel block with sliding-window layers, same logit scale
        return T.Cohere2Config(logit_scale=0.0625, sliding_window=64, layer_types=["sliding_attention", "full_attention"]
                               [:n_layers] + ["full_attention"] * max(0, n_layers - 2), **gqa)
    if family == "xglm":
        return T.XGLMConfig(d_model=d_model, ffn_dim=d_mlp, num_layers=n_layers, attention_heads=2,
                            max_position_embeddings=128, decoder_start_token_id=0, **common)
    raise ValueError(family)


def make_model(family: str, vocab_size: int = 320, *, seed: int = 0, **kw) -> T.PreTrainedModel:
    """Return a tiny random-init causal LM of ``family`` in eval mode (eager attention)."""
    torch.manual_seed(seed)
    cfg = make_config(family, vocab_size, **kw)
    model = T.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    # Random-init biases/norms are trivial; perturb them so tests exercise every term.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def save_tiny(family: str, directory: Path, *, seed: int = 0) -> Path:
    """Write a tiny model + tokenizer of ``family`` with ``save_pretrained`` and return the dir.

    The tokenizer prepends BOS natively for Llama and Cohere, as their released tokenizers do.
    """
    tok = family_tokenizer(family)
    model = make_model(family, len(tok), seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def fox_bridge(tok: T.PreTrainedTokenizerFast) -> tuple[object, int]:
    """Return (bridge, fox id): a tiny GPT-2 whose value vector (1, 0) is 100x the unit unembedding
    column of the " fox" token of "the quick brown fox", so that token ranks first in its projection."""
    from interp.model.architecture import unwrap, get_adapter
    from interp.model.loading import wrap_bridge

    hf = make_model("gpt2", len(tok))
    a = get_adapter(hf)
    fox = tok("the quick brown fox", add_special_tokens=False)["input_ids"][-2]
    W_U = a.unembed_matrix()
    with torch.no_grad():
        unwrap(a.out_proj(1)).weight[0] = 100 * W_U[:, fox] / W_U[:, fox].norm()
    return wrap_bridge(hf, tok), fox


def save_tiny_classifier(tok: T.PreTrainedTokenizerFast, directory: Path) -> T.PreTrainedModel:
    """Save a tiny random-init GPT-2 toxicity classifier (labels non-toxic/toxic) and ``tok`` to
    ``directory`` (for the ``hf`` scorer) and return the model, in eval mode."""
    cfg = T.GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=64, vocab_size=len(tok),
                       num_labels=2, pad_token_id=1, id2label={0: "non-toxic", 1: "toxic"},
                       label2id={"non-toxic": 0, "toxic": 1})
    torch.manual_seed(0)
    model = T.GPT2ForSequenceClassification(cfg).eval()
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return model
