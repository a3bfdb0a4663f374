#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from the shared fixtures at run time (nothing of
them is copied into the repository): fuzz/seeds.py FIXTURES OUT writes OUT/<target>/...

Big fixture files are cut down to what exercises the same code fast: a safetensors file
keeps its small tensors (re-laid, so the file stays valid), CLIP's tokenizer.json its byte
alphabet and the merges over it."""
import json
import os
import struct
import sys
from pathlib import Path

fixtures, out = Path(sys.argv[1]), Path(sys.argv[2])


def put(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def model_dirs():
    for p in sorted(fixtures.rglob("config.json")):
        yield p.parent


def small_safetensors(path, max_numel=1024, max_tensors=24):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    keep, data = {}, b""
    for name, e in header.items():
        if name == "__metadata__":
            keep[name] = e
            continue
        numel = 1
        for d in e["shape"]:
            numel *= d
        if numel > max_numel or len(keep) >= max_tensors:
            continue
        a, b = e["data_offsets"]
        chunk = raw[8 + n + a : 8 + n + b]
        keep[name] = {"dtype": e["dtype"], "shape": e["shape"], "data_offsets": [len(data), len(data) + len(chunk)]}
        data += chunk
    js = json.dumps(keep, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)  # safetensors pads the header to 8 bytes
    return struct.pack("<Q", len(js)) + js + data


def small_clip_tokenizer(path, merges=400):
    t = json.loads(path.read_bytes())
    vocab = t["model"]["vocab"]
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    kept = dict(by_id[:512])
    kept_merges = []
    for m in t["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if a in kept and b in kept and len(kept_merges) < merges:
            kept_merges.append(m)
            kept.setdefault(a + b, len(kept))
    for tok in t.get("added_tokens", []):
        kept[tok["content"]] = len(kept)
        tok["id"] = kept[tok["content"]]
    t["model"]["vocab"] = kept
    t["model"]["merges"] = kept_merges
    # The post-processor names the special tokens' ids.
    pp = t.get("post_processor") or {}
    for key in ("cls", "sep"):
        if key in pp and pp[key][0] in kept:
            pp[key][1] = kept[pp[key][0]]
    return json.dumps(t, ensure_ascii=False).encode()


for d in model_dirs():
    tag = str(d.relative_to(fixtures)).replace(os.sep, "-")
    put("config", f"{tag}.json", (d / "config.json").read_bytes())
    pre = d / "preprocessor_config.json"
    if pre.exists():
        for i in range(5):  # the first byte picks the model's input size
            put("preprocessor_config", f"{tag}-{i}", bytes([i]) + pre.read_bytes())
    tc = d / "tokenizer_config.json"
    if tc.exists():
        put("tokenizer_config", f"{tag}.json", tc.read_bytes())
    for w in ("model.safetensors", "model.fp16.safetensors", "golden.safetensors"):
        if (d / w).exists():
            put("safetensors", f"{tag}-{w}", small_safetensors(d / w))
    sp = d / "spiece.model"
    if sp.exists():
        put("spiece", f"{tag}.model", sp.read_bytes())
    tj = d / "tokenizer.json"
    if tj.exists():
        data = tj.read_bytes()
        put("tokenizer_json", f"{tag}.json", small_clip_tokenizer(tj) if b"<|startoftext|>" in data else data)
    golden = d / "golden.json"
    if golden.exists():
        for i, text in enumerate(json.loads(golden.read_bytes()).get("texts", [])):
            put("tokenize", f"{tag}-{i}", text.encode())

for p in sorted((fixtures / "images").iterdir()):
    data = p.read_bytes()
    if len(data) <= 65536:
        for i in range(3):  # the first byte picks CLIP 224, SigLIP 32 or CLIP 7 preprocessing
            put("image", f"{p.name}-{i}", bytes([i]) + data)

put("checkpoint", "empty", b"")
