#!/usr/bin/env python3
"""Makes the tiny Llama checkpoints and reference logits that examples/llama2's tests use.

Needs (PyPI): torch transformers safetensors sentencepiece numpy. Writes, under
tests/data/tiny_llama/ (committed, so CI needs no Python):

  tokenizer.model            SentencePiece BPE, vocab 384, byte fallback, Llama's ids
                             (<unk>=0, <s>=1, </s>=2), trained on generated text
  fp32_sharded/              2 layers, GQA 4/2, head_dim 64 (hidden 128), rope_theta 50000,
                             untied, float32, two shards + model.safetensors.index.json
  bf16_tied/                 same shapes, bfloat16, tie_word_embeddings, rms_norm_eps 1e-6,
                             one model.safetensors
  (fp32_sharded's config.json has the top-level rope_theta of the Hub's Llama 2 checkpoints,
  bf16_tied's the rope_parameters block transformers 5 writes; the loader reads both.)
  <variant>/reference.json   transformers' float32 logits (weights upcast to float32) for a
                             fixed prompt: every prefill position, then 6 greedy decode steps
  chat_reference.json        the Llama 2 chat-format token ids of a two-turn conversation
                             with a system prompt (Meta's reference format)

Run from the repository root:  python3 scripts/make_tiny_llama.py
"""
import json
import os
import random
import shutil

import numpy as np
import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join("tests", "data", "tiny_llama")
PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"
DECODE_STEPS = 6


def corpus():
    rng = random.Random(0)
    words = ("the quick brown fox jumps over lazy dog once upon a time there was little "
             "model that learned to speak about attention keys values queries cache sparse "
             "tokens system user assistant hello world please answer question why how what "
             "is are and or not sky blue green red sun moon star river mountain").split()
    lines = ["[INST] <<SYS>> <</SYS>> [/INST]", PROMPT]
    for _ in range(3000):
        n = rng.randint(4, 14)
        s = " ".join(rng.choice(words) for _ in range(n))
        lines.append(s[0].upper() + s[1:] + rng.choice([".", "?", "!", ","]))
    return "\n".join(lines) + "\n"


def train_tokenizer(path):
    text = os.path.join(OUT, "_corpus.txt")
    with open(text, "w") as f:
        f.write(corpus())
    spm.SentencePieceTrainer.train(
        input=text, model_prefix=path[:-len(".model")], vocab_size=384, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=True, character_coverage=1.0, num_threads=1,
        minloglevel=2)
    os.remove(text)
    os.remove(path[:-len(".model")] + ".vocab")


def make_model(tie, dtype, eps, seed):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=384, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, rope_theta=50000.0,
        rms_norm_eps=eps, max_position_embeddings=256, tie_word_embeddings=tie,
        initializer_range=0.1, bos_token_id=1, eos_token_id=2, torch_dtype=dtype)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norm weights, so a missed norm weight shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    return cfg, model.to(dtype)


def rounded(values):
    return [float(f"{v:.8g}") for v in values]


def reference(cfg, model, ids):
    # A fresh float32 model with the (possibly bf16) weights upcast: model.to(bfloat16) also
    # rounds the rotary inv_freq buffer, which float() would not undo.
    cfg32 = LlamaConfig.from_dict({**cfg.to_dict(), "torch_dtype": "float32", "dtype": "float32"})
    ref = LlamaForCausalLM(cfg32).float().eval()
    ref.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    model = ref
    out = {"prompt": PROMPT, "prompt_ids": ids, "prefill_logits": [], "decode": []}
    with torch.no_grad():
        x = torch.tensor([ids])
        res = model(x, use_cache=True)
        out["prefill_logits"] = [rounded(row) for row in res.logits[0].tolist()]
        past = res.past_key_values
        tok = int(res.logits[0, -1].argmax())
        for _ in range(DECODE_STEPS):
            res = model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
            past = res.past_key_values
            out["decode"].append({"token": tok, "logits": rounded(res.logits[0, -1].tolist())})
            tok = int(res.logits[0, -1].argmax())
    return out


def save_variant(name, cfg, model, shards, legacy_config):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    cfg_dict = cfg.to_dict()
    cfg_dict["architectures"] = ["LlamaForCausalLM"]
    if legacy_config:  # the form of the Llama 2 checkpoints on the Hub (transformers 4.x)
        rope = cfg_dict.pop("rope_parameters", None) or {}
        cfg_dict["rope_theta"] = rope.get("rope_theta", 10000.0)
        cfg_dict["rope_scaling"] = None
        cfg_dict["torch_dtype"] = cfg_dict.pop("dtype", "float32")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=2, sort_keys=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    names = sorted(state)
    if shards == 1:
        save_file(state, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        os.chmod(os.path.join(d, "model.safetensors"), 0o644)
        return
    weight_map = {}
    per = (len(names) + shards - 1) // shards
    for i in range(shards):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in names[i * per:(i + 1) * per]}
        save_file(part, os.path.join(d, fname), metadata={"format": "pt"})
        os.chmod(os.path.join(d, fname), 0o644)
        weight_map.update({k: fname for k in part})
    total = sum(v.numel() * v.element_size() for v in state.values())
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def chat_reference(sp):
    # Meta's llama/generation.py chat_completion format.
    B_INST, E_INST = "[INST]", "[/INST]"
    B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
    system = "You are a helpful assistant."
    turns = [("Hello, who are you?", "I am a tiny model."), ("What is the sky?", None)]
    ids = []
    for i, (user, answer) in enumerate(turns):
        if i == 0:
            user = B_SYS + system + E_SYS + user
        if answer is not None:
            ids += [sp.bos_id()] + sp.encode(f"{B_INST} {user.strip()} {E_INST} {answer.strip()} ") \
                + [sp.eos_id()]
        else:
            ids += [sp.bos_id()] + sp.encode(f"{B_INST} {user.strip()} {E_INST}")
    return {"system": system, "turns": [[u, a] for u, a in turns], "ids": ids,
            "plain": {"text": "Hello world", "ids": sp.encode("Hello world")}}


def main():
    os.makedirs(OUT, exist_ok=True)
    tok_path = os.path.join(OUT, "tokenizer.model")
    train_tokenizer(tok_path)
    sp = spm.SentencePieceProcessor(model_file=tok_path)
    ids = [sp.bos_id()] + sp.encode(PROMPT)
    with open(os.path.join(OUT, "chat_reference.json"), "w") as f:
        json.dump(chat_reference(sp), f, indent=1)
    for name, tie, dtype, eps, shards, seed in [
            ("fp32_sharded", False, torch.float32, 1e-5, 2, 1),
            ("bf16_tied", True, torch.bfloat16, 1e-6, 1, 2)]:
        cfg, model = make_model(tie, dtype, eps, seed)
        save_variant(name, cfg, model, shards, legacy_config=(shards > 1))
        shutil.copy(tok_path, os.path.join(OUT, name, "tokenizer.model"))
        ref = reference(cfg, model, ids)
        with open(os.path.join(OUT, name, "reference.json"), "w") as f:
            json.dump(ref, f, separators=(",", ":"))
        last = np.array(ref["prefill_logits"][-1])
        top = np.sort(last)[::-1]
        print(f"{name}: prompt {len(ids)} tokens, greedy {[s['token'] for s in ref['decode']]}, "
              f"logit range [{last.min():.3f}, {last.max():.3f}], top-2 gap {top[0] - top[1]:.4f}")


if __name__ == "__main__":
    main()
