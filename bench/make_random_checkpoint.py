#!/usr/bin/env python3
"""Writes a DeepSeek-VL2 checkpoint folder with random BF16 weights of the real shapes
(tiny, small or base), sharded like the published ones, for benchmarks and large-shape tests.
Random weights cost exactly what real ones do. Needs numpy; not used at run time.

usage: make_random_checkpoint.py tiny|small|base OUT_DIR [--shard-gb 4]
"""
import json, os, struct, sys
import numpy as np

SHAPES = {
    # language_config fields that differ between the variants (spec §1.3)
    "tiny": dict(vocab_size=129280, hidden_size=1280, intermediate_size=6848, moe_intermediate_size=896,
                 num_hidden_layers=12, num_attention_heads=10, num_key_value_heads=10, n_routed_experts=64,
                 n_shared_experts=2, num_experts_per_tok=6, use_mla=False, topk_method="greedy",
                 scoring_func="softmax", norm_topk_prob=False, routed_scaling_factor=1.0, bos_token_id=0, eos_token_id=1),
    "small": dict(vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
                  num_hidden_layers=27, num_attention_heads=16, num_key_value_heads=16, n_routed_experts=64,
                  n_shared_experts=2, num_experts_per_tok=6, use_mla=True, kv_lora_rank=512, q_lora_rank=None,
                  qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, topk_method="greedy",
                  scoring_func="softmax", norm_topk_prob=False, routed_scaling_factor=1.0,
                  bos_token_id=100000, eos_token_id=100001),
    "base": dict(vocab_size=129280, hidden_size=2560, intermediate_size=12288, moe_intermediate_size=1536,
                 num_hidden_layers=30, num_attention_heads=32, num_key_value_heads=32, n_routed_experts=72,
                 n_shared_experts=2, num_experts_per_tok=6, use_mla=True, kv_lora_rank=512, q_lora_rank=None,
                 qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, topk_method="noaux_tc",
                 scoring_func="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.0, bos_token_id=0, eos_token_id=1),
}
CANDIDATES = [[384, 384], [384, 768], [768, 384], [384, 1152], [1152, 384], [384, 1536], [1536, 384], [768, 768],
              [384, 1920], [1920, 384], [384, 2304], [2304, 384], [768, 1152], [1152, 768], [384, 2688], [2688, 384],
              [384, 3072], [3072, 384], [768, 1536], [1536, 768], [384, 3456], [3456, 384], [1152, 1152]]


def tensors(lm):
    V, H = 1152, lm["hidden_size"]
    yield "vision.patch_embed.proj.weight", [V, 3, 14, 14]
    yield "vision.patch_embed.proj.bias", [V]
    yield "vision.pos_embed", [1, 729, V]
    for b in range(27):
        p = f"vision.blocks.{b}."
        for n in ("norm1", "norm2"):
            yield p + n + ".weight", [V]
            yield p + n + ".bias", [V]
        yield p + "attn.qkv.weight", [3 * V, V]; yield p + "attn.qkv.bias", [3 * V]
        yield p + "attn.proj.weight", [V, V]; yield p + "attn.proj.bias", [V]
        yield p + "mlp.fc1.weight", [4304, V]; yield p + "mlp.fc1.bias", [4304]
        yield p + "mlp.fc2.weight", [V, 4304]; yield p + "mlp.fc2.bias", [V]
    yield "vision.norm.weight", [V]; yield "vision.norm.bias", [V]
    yield "projector.layers.0.weight", [H, 4 * V]; yield "projector.layers.0.bias", [H]
    yield "projector.layers.2.weight", [H, H]; yield "projector.layers.2.bias", [H]
    yield "image_newline", [H]; yield "view_seperator", [H]
    yield "language.model.embed_tokens.weight", [lm["vocab_size"], H]
    nh = lm["num_attention_heads"]
    for l in range(lm["num_hidden_layers"]):
        p = f"language.model.layers.{l}."
        yield p + "input_layernorm.weight", [H]; yield p + "post_attention_layernorm.weight", [H]
        if lm["use_mla"]:
            qk = lm["qk_nope_head_dim"] + lm["qk_rope_head_dim"]
            yield p + "self_attn.q_proj.weight", [nh * qk, H]
            yield p + "self_attn.kv_a_proj_with_mqa.weight", [lm["kv_lora_rank"] + lm["qk_rope_head_dim"], H]
            yield p + "self_attn.kv_a_layernorm.weight", [lm["kv_lora_rank"]]
            yield p + "self_attn.kv_b_proj.weight", [nh * (lm["qk_nope_head_dim"] + lm["v_head_dim"]), lm["kv_lora_rank"]]
            yield p + "self_attn.o_proj.weight", [H, nh * lm["v_head_dim"]]
        else:
            for n in "qkvo":
                yield p + f"self_attn.{n}_proj.weight", [H, H]
        if l == 0:
            I = lm["intermediate_size"]
            yield p + "mlp.gate_proj.weight", [I, H]; yield p + "mlp.up_proj.weight", [I, H]
            yield p + "mlp.down_proj.weight", [H, I]
        else:
            E, I = lm["n_routed_experts"], lm["moe_intermediate_size"]
            yield p + "mlp.gate.weight", [E, H]
            if lm["topk_method"] == "noaux_tc":
                yield p + "mlp.gate.e_score_correction_bias", [E]
            for e in range(E):
                q = p + f"mlp.experts.{e}."
                yield q + "gate_proj.weight", [I, H]; yield q + "up_proj.weight", [I, H]; yield q + "down_proj.weight", [H, I]
            S = lm["n_shared_experts"] * I
            yield p + "mlp.shared_experts.gate_proj.weight", [S, H]; yield p + "mlp.shared_experts.up_proj.weight", [S, H]
            yield p + "mlp.shared_experts.down_proj.weight", [H, S]
    yield "language.model.norm.weight", [H]
    yield "language.lm_head.weight", [lm["vocab_size"], H]


def random_bf16(shape, rng, name):
    n = int(np.prod(shape))
    if name.endswith("norm.weight") or "layernorm" in name or name.endswith("norm1.weight") or name.endswith("norm2.weight"):
        x = np.ones(n, np.float32)
    elif name.endswith(".bias") or "correction_bias" in name:
        x = rng.standard_normal(n, np.float32) * 0.01
    else:
        fan_in = shape[-1] if len(shape) == 2 else int(np.prod(shape[1:]))
        x = rng.standard_normal(n, np.float32) * (1.0 / np.sqrt(max(fan_in, 1)))
    x = np.ascontiguousarray(x, dtype=np.float32)
    return (x.view(np.uint32) >> 16).astype(np.uint16)  # truncation to bf16 is fine for random data


def write_shard(path, items):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, arr in items:
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + arr.nbytes]}
        off += arr.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for _, _, arr in items:
            f.write(arr.tobytes())


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in SHAPES:
        sys.exit(__doc__)
    kind, out = sys.argv[1], sys.argv[2]
    shard_bytes = int(float(sys.argv[4]) * 2**30) if len(sys.argv) > 4 and sys.argv[3] == "--shard-gb" else 4 * 2**30
    lm = dict(SHAPES[kind])
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    shards, cur, size = [], [], 0
    for name, shape in tensors(lm):
        arr = random_bf16(shape, rng, name)
        cur.append((name, shape, arr)); size += arr.nbytes
        if size >= shard_bytes:
            shards.append(cur); cur, size = [], 0
    if cur:
        shards.append(cur)
    weight_map = {}
    for i, items in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(os.path.join(out, fname), items)
        for name, _, _ in items:
            weight_map[name] = fname
        print("wrote", fname, file=sys.stderr)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    lang = dict(lm, model_type="deepseek_v2", first_k_dense_replace=1, moe_layer_freq=1, n_group=1, topk_group=1,
                max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu")
    if not lang["use_mla"]:
        lang.update(q_lora_rank=None, kv_lora_rank=None, qk_nope_head_dim=0, qk_rope_head_dim=0, v_head_dim=0)
    cfg = {"model_type": "deepseek_vl_v2", "candidate_resolutions": CANDIDATES, "global_view_pos": "head", "tile_tag": "2D",
           "vision_config": {"model_name": "siglip_so400m_patch14_384", "image_size": 384, "patch_size": 14, "width": 1152,
                             "layers": 27, "heads": 16, "mlp_ratio": 3.7362, "global_pool": "map", "ignore_head": True,
                             "class_token": False, "num_classes": 0},
           "projector_config": {"projector_type": "downsample_mlp_gelu", "input_dim": 1152, "n_embed": lm["hidden_size"],
                                "depth": 2, "mlp_ratio": 1, "downsample_ratio": 2},
           "language_config": lang}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


if __name__ == "__main__":
    main()
