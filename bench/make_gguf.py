#!/usr/bin/env python3
"""Random-weight GGUF files with DeepSeek-VL2-Tiny's shapes, for timing llama.cpp against vlm.

Writes into OUTDIR:
  tiny-lm-f16.gguf      the language model (spec §1.3/§5 shapes), F16 matrices, F32 norms and router
  tiny-mmproj-f16.gguf  (--mmproj) a SigLIP-SO400M-384/14 vision tower as a llama.cpp "clip" file
  clip-host-stub.gguf   (--mmproj) a 1-layer text model with n_embd 1280 and a byte-level vocabulary;
                        llama-mtmd-cli needs some text model to load the mmproj and tokenize the prompt
  image384.png          (--mmproj) a 384x384 test image

The weights are N(0, 0.02) values (the norm weights are 1). To keep a 5.9 GB file quick to write,
every tensor is filled from one pool of normal values at random offsets; throughput does not depend
on the values. Quantize afterwards with llama-quantize (bench/run_llama_cpp.sh shows how).

usage: bench/make_gguf.py OUTDIR [--arch deepseek2-ocr|deepseek] [--mmproj] [--no-lm]
Needs Python 3, numpy and the PyPI package `gguf` (pip install gguf).
"""
import argparse
import os
import struct
import sys
import zlib

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("make_gguf: the Python package 'gguf' is missing (pip install gguf)")

# DeepSeek-VL2-Tiny language model (spec §1.3; fusion/mkmodel.c "tiny" row).
TINY = dict(
    vocab=129280, hidden=1280, layers=12, heads=10, kv_heads=10, head_dim=128,
    dense_inter=6848,            # intermediate_size of the first_k_dense_replace=1 dense layer
    moe_inter=896, experts=64, top_k=6, shared=2,
    scaling=1.0, norm_topk=False,  # softmax scoring, greedy top-6, no renormalisation
    rope_theta=10000.0, rms_eps=1e-6, ctx=4096,
)

# SigLIP-SO400M 384/14 as used by DeepSeek-VL2 (spec §1.1) and the projector's output width.
VIT = dict(image=384, patch=14, width=1152, layers=27, heads=16, mlp=4304, eps=1e-6, out=1280)

GGML_F16, GGML_F32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
FTYPE_MOSTLY_F16 = 1

_rng = np.random.default_rng(1234)
_POOL = (_rng.standard_normal(1 << 24, dtype=np.float32) * 0.02)
_POOL16 = _POOL.astype(np.float16)


def rand(shape, dtype):
    """N(0, 0.02) values of `shape`, copied from the pool in chunks starting at random offsets."""
    pool = _POOL16 if dtype == np.float16 else _POOL
    n = int(np.prod(shape))
    out = np.empty(n, dtype=dtype)
    pos = 0
    while pos < n:
        start = int(_rng.integers(0, pool.size // 2))
        take = min(n - pos, pool.size - start)
        out[pos:pos + take] = pool[start:start + take]
        pos += take
    return out.reshape(shape)


def ones(shape):
    return np.ones(shape, dtype=np.float32)


class Plan:
    """Tensors are declared first (name, numpy shape, dtype, maker) and written one at a time, so a
    multi-GB file never has to sit in memory."""

    def __init__(self):
        self.items = []

    def add(self, name, shape, dtype, maker=None):
        self.items.append((name, tuple(shape), dtype, maker or (lambda s=tuple(shape), d=dtype: rand(s, d))))

    def write(self, writer, path):
        for name, shape, dtype, _ in self.items:
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            writer.add_tensor_info(name, shape, np.dtype(dtype), nbytes)
        writer.write_header_to_file(path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for name, shape, dtype, maker in self.items:
            t = maker()
            assert t.shape == shape and t.dtype == dtype, name
            writer.write_tensor_data(t)
        writer.close()


def lm_keys(w, arch, t):
    """The GGUF metadata llama.cpp reads for LLM_ARCH_DEEPSEEK / LLM_ARCH_DEEPSEEK2OCR."""
    a = arch
    w.add_string("general.name", "deepseek-vl2-tiny-decoder-random")
    w.add_uint32("general.file_type", FTYPE_MOSTLY_F16)
    w.add_uint32(f"{a}.vocab_size", t["vocab"])
    w.add_uint32(f"{a}.context_length", t["ctx"])
    w.add_uint32(f"{a}.embedding_length", t["hidden"])
    w.add_uint32(f"{a}.block_count", t["layers"])
    w.add_uint32(f"{a}.feed_forward_length", t["dense_inter"])
    w.add_uint32(f"{a}.attention.head_count", t["heads"])
    w.add_uint32(f"{a}.attention.head_count_kv", t["kv_heads"])
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", t["rms_eps"])
    w.add_float32(f"{a}.rope.freq_base", t["rope_theta"])
    w.add_uint32(f"{a}.rope.dimension_count", t["head_dim"])
    w.add_uint32(f"{a}.leading_dense_block_count", 1)
    w.add_uint32(f"{a}.expert_feed_forward_length", t["moe_inter"])
    w.add_uint32(f"{a}.expert_count", t["experts"])
    w.add_uint32(f"{a}.expert_used_count", t["top_k"])
    w.add_uint32(f"{a}.expert_shared_count", t["shared"])
    w.add_float32(f"{a}.expert_weights_scale", t["scaling"])
    if arch == "deepseek2-ocr":
        # "deepseek" hard-codes both: softmax gating, no renormalisation of the top-k weights.
        w.add_bool(f"{a}.expert_weights_norm", t["norm_topk"])
        w.add_uint32(f"{a}.expert_gating_func", 1)  # LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX
    # No tokenizer: llama.cpp then makes vocab_size dummy tokens, which is all llama-bench needs.
    w.add_string("tokenizer.ggml.model", "none")


def write_lm(path, arch):
    t = TINY
    H, V, I, Im, E, S = t["hidden"], t["vocab"], t["dense_inter"], t["moe_inter"], t["experts"], t["shared"]
    f16, f32 = np.float16, np.float32
    p = Plan()
    # numpy shapes are the reverse of ggml's ne: [out, in] for a matrix, [E, out, in] for experts.
    p.add("token_embd.weight", (V, H), f16)
    for i in range(t["layers"]):
        b = f"blk.{i}."
        p.add(b + "attn_norm.weight", (H,), f32, lambda: ones((H,)))
        for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
            p.add(b + n + ".weight", (H, H), f16)
        p.add(b + "ffn_norm.weight", (H,), f32, lambda: ones((H,)))
        if i == 0:  # first_k_dense_replace = 1
            p.add(b + "ffn_gate.weight", (I, H), f16)
            p.add(b + "ffn_up.weight", (I, H), f16)
            p.add(b + "ffn_down.weight", (H, I), f16)
        else:
            p.add(b + "ffn_gate_inp.weight", (E, H), f32)  # the router runs in fp32 (spec §4.5)
            p.add(b + "ffn_gate_exps.weight", (E, Im, H), f16)
            p.add(b + "ffn_up_exps.weight", (E, Im, H), f16)
            p.add(b + "ffn_down_exps.weight", (E, H, Im), f16)
            p.add(b + "ffn_gate_shexp.weight", (S * Im, H), f16)
            p.add(b + "ffn_up_shexp.weight", (S * Im, H), f16)
            p.add(b + "ffn_down_shexp.weight", (H, S * Im), f16)
    p.add("output_norm.weight", (H,), f32, lambda: ones((H,)))
    p.add("output.weight", (V, H), f16)  # untied lm_head
    w = gguf.GGUFWriter(None, arch)
    lm_keys(w, arch, t)
    p.write(w, path)


def write_mmproj(path):
    """A llama.cpp "janus_pro" mmproj: SigLIP ViT (LayerNorm, GELU, learned position embeddings,
    no class token, final LayerNorm) followed by a 2-layer GELU MLP to the LM width. Only the
    projector differs from DeepSeek-VL2's (no 2x2 token merge): ~0.2% of the encoder's FLOPs."""
    v = VIT
    D, F, P, O = v["width"], v["mlp"], v["patch"], v["out"]
    n_pos = (v["image"] // P) ** 2
    f16, f32 = np.float16, np.float32
    p = Plan()
    p.add("v.patch_embd.weight", (D, 3, P, P), f16)
    p.add("v.patch_embd.bias", (D,), f32)
    p.add("v.position_embd.weight", (n_pos, D), f32)
    for i in range(v["layers"]):
        b = f"v.blk.{i}."
        p.add(b + "ln1.weight", (D,), f32, lambda: ones((D,)))
        p.add(b + "ln1.bias", (D,), f32)
        for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
            p.add(b + n + ".weight", (D, D), f16)
            p.add(b + n + ".bias", (D,), f32)
        p.add(b + "ln2.weight", (D,), f32, lambda: ones((D,)))
        p.add(b + "ln2.bias", (D,), f32)
        p.add(b + "ffn_up.weight", (F, D), f16)
        p.add(b + "ffn_up.bias", (F,), f32)
        p.add(b + "ffn_down.weight", (D, F), f16)
        p.add(b + "ffn_down.bias", (D,), f32)
    p.add("v.post_ln.weight", (D,), f32, lambda: ones((D,)))
    p.add("v.post_ln.bias", (D,), f32)
    p.add("mm.0.weight", (O, D), f16)
    p.add("mm.0.bias", (O,), f32)
    p.add("mm.1.weight", (O, O), f16)
    p.add("mm.1.bias", (O,), f32)
    w = gguf.GGUFWriter(None, "clip")
    w.add_string("general.name", "siglip-so400m-384-random")
    w.add_uint32("general.file_type", FTYPE_MOSTLY_F16)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "janus_pro")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", v["image"])
    w.add_uint32("clip.vision.patch_size", P)
    w.add_uint32("clip.vision.embedding_length", D)
    w.add_uint32("clip.vision.feed_forward_length", F)
    w.add_uint32("clip.vision.block_count", v["layers"])
    w.add_uint32("clip.vision.attention.head_count", v["heads"])
    w.add_float32("clip.vision.attention.layer_norm_epsilon", v["eps"])
    w.add_uint32("clip.vision.projection_dim", O)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    p.write(w, path)


def add_spm_vocab(w, n_tokens, n_scores):
    """A placeholder SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then "t<id>" words
    up to n_tokens (llama.cpp's "llama" tokenizer type; bench/gguf_add_vocab.py uses it too)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"t{i}" for i in range(len(tokens), n_tokens)]
    types = [2, 3, 3] + [6] * 256 + [1] * (n_tokens - 259)  # UNKNOWN, CONTROL x2, BYTE x256, NORMAL
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.scores", [0.0] * n_scores)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_uint32("tokenizer.ggml.unknown_token_id", 0)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)


def write_host_stub(path):
    """1-layer "llama" text model, n_embd 1280 (must equal the mmproj output), SentencePiece-style
    vocabulary of <unk>, <s>, </s> and the 256 byte tokens, so any prompt tokenizes."""
    H, V, F = 1280, 259, 256
    f16, f32 = np.float16, np.float32
    p = Plan()
    p.add("token_embd.weight", (V, H), f16)
    p.add("blk.0.attn_norm.weight", (H,), f32, lambda: ones((H,)))
    for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
        p.add("blk.0." + n + ".weight", (H, H), f16)
    p.add("blk.0.ffn_norm.weight", (H,), f32, lambda: ones((H,)))
    p.add("blk.0.ffn_gate.weight", (F, H), f16)
    p.add("blk.0.ffn_up.weight", (F, H), f16)
    p.add("blk.0.ffn_down.weight", (H, F), f16)
    p.add("output_norm.weight", (H,), f32, lambda: ones((H,)))
    p.add("output.weight", (V, H), f16)
    a = "llama"
    w = gguf.GGUFWriter(None, a)
    w.add_string("general.name", "clip-host-stub")
    w.add_uint32("general.file_type", FTYPE_MOSTLY_F16)
    w.add_uint32(f"{a}.context_length", 4096)
    w.add_uint32(f"{a}.embedding_length", H)
    w.add_uint32(f"{a}.block_count", 1)
    w.add_uint32(f"{a}.feed_forward_length", F)
    w.add_uint32(f"{a}.attention.head_count", 10)
    w.add_uint32(f"{a}.attention.head_count_kv", 10)
    w.add_uint32(f"{a}.rope.dimension_count", 128)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_uint32(f"{a}.vocab_size", V)
    add_spm_vocab(w, 259, V)
    # No chat template: bench/run_llama_cpp.sh passes --chat-template chatml.
    p.write(w, path)


def write_png(path, size=384):
    """A smooth RGB gradient (content does not matter for timing), as an 8-bit PNG."""
    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([x * 255 // (size - 1), y * 255 // (size - 1), (x + y) * 255 // (2 * size - 2)], -1)
    rows = np.concatenate([np.zeros((size, 1), np.uint8), img.astype(np.uint8).reshape(size, -1)], 1)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--arch", default="deepseek2-ocr", choices=["deepseek2-ocr", "deepseek"],
                    help="llama.cpp architecture (both run Tiny's decoder; deepseek2-ocr is DeepSeek-OCR's "
                         "decoder, identical to Tiny's, with NeoX RoPE like Tiny)")
    ap.add_argument("--mmproj", action="store_true", help="also write the vision files for llama-mtmd-cli")
    ap.add_argument("--no-lm", action="store_true", help="skip the language model")
    ap.add_argument("--force", action="store_true", help="rewrite files that exist")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    jobs = []
    if not args.no_lm:
        jobs.append(("tiny-lm-f16.gguf", lambda p: write_lm(p, args.arch)))
    if args.mmproj:
        jobs += [("tiny-mmproj-f16.gguf", write_mmproj), ("clip-host-stub.gguf", write_host_stub),
                 ("image384.png", write_png)]
    for name, fn in jobs:
        path = os.path.join(args.outdir, name)
        if os.path.exists(path) and not args.force:
            print(f"make_gguf: {path} exists (--force rewrites it)")
            continue
        tmp = path + ".part"
        fn(tmp)
        os.replace(tmp, path)
        print(f"make_gguf: wrote {path} ({os.path.getsize(path) / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
