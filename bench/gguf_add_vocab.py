#!/usr/bin/env python3
"""Copies a GGUF from bench/make_gguf.py (tokenizer "none") adding a placeholder SentencePiece-style vocabulary
of the model's vocab_size tokens, so that llama-server can run it: it asserts on a model without a vocabulary
as soon as it turns a generated token into text, where llama-bench and llama-batched-bench never do.

    bench/gguf_add_vocab.py GGUF_DIR/tiny-lm-q4_0.gguf GGUF_DIR/tiny-lm-q4_0-vocab.gguf

Tokens: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then "t<id>" placeholders; no merges, no chat
template (run_serve.sh sends token ids to /completion). The tensors are copied byte for byte."""
import os
import sys

import gguf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf import add_spm_vocab  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    vocab = int(reader.fields["%s.vocab_size" % arch].contents()) if "%s.vocab_size" % arch in reader.fields else None
    if vocab is None:
        emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
        vocab = int(emb.shape[-1])
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF.") or field.name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    add_spm_vocab(writer, vocab, vocab)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    print("%s: %d tokens" % (dst, vocab))


if __name__ == "__main__":
    main()
