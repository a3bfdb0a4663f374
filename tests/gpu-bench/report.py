"""One table from a tests/gpu-bench/run.sh run: webclip's image throughput (f32 and f16
weight storage) beside PyTorch's (float32 without TF32, TF32, fp16 autocast) per batch, and
the ratios the GPU goals are stated in. Reads DIR/webclip-f32.txt, DIR/webclip-f16.txt (and
DIR/webclip-f16-plain.txt, f16 without tensor cores, where they were used), DIR/torch.json
and DIR/gpu-kernels.txt; writes DIR/gpu-bench.json.

  python3 report.py DIR
"""
import json
import os
import re
import sys


def webclip(path):
    """The adapter, upload line and per-batch image times of one `webclip bench` output."""
    if not os.path.exists(path):
        return None
    text = open(path).read()
    adapter = re.search(r"^adapter: (.*)$", text, re.M)
    cores = re.search(r"^tensor cores: (.*)$", text, re.M)
    upload = re.search(r"^upload: (.*)$", text, re.M)
    images = {
        int(b): float(ms)
        for b, ms in re.findall(r"^image batch\s+(\d+):\s+([\d.]+) ms", text, re.M)
    }
    text_ms = re.search(r"^text batch .*?:\s+([\d.]+) ms", text, re.M)
    matmuls = re.findall(r"^\s+(\S.*?)\s+(\d+) x\s+(\d+) ->\s+(\d+):\s+([\d.]+) ms\s+([\d.]+) GFLOP/s", text, re.M)
    return {
        "adapter": adapter.group(1) if adapter else None,
        "tensor_cores": cores.group(1) if cores else None,
        "upload": upload.group(1) if upload else None,
        "image_ms": images,
        "text_ms": float(text_ms.group(1)) if text_ms else None,
        "matmuls": [
            {"what": w, "m": int(m), "k": int(k), "n": int(n), "ms": float(ms), "gflops": float(g)}
            for w, m, k, n, ms, g in matmuls
        ],
    }


def main():
    out = sys.argv[1]
    runs = {w: webclip(os.path.join(out, f"webclip-{w}.txt")) for w in ("f32", "f16", "f16-plain")}
    torch_path = os.path.join(out, "torch.json")
    torch = json.load(open(torch_path)) if os.path.exists(torch_path) else {"skipped": "no torch.json"}
    tms = {(r["mode"], r["batch"]): r["ms"] for r in torch.get("rows", [])}
    batches = sorted({b for r in runs.values() if r for b in r["image_ms"]})
    ips = lambda b, ms: b * 1e3 / ms if ms else None
    cell = lambda b, ms: f"{ms:.2f} ms, {ips(b, ms):.3g}/s" if ms else "-"
    ratio = lambda a, b: f"{b / a:.2f}x" if a and b else "-"

    adapter = next((r["adapter"] for r in runs.values() if r and r["adapter"]), "unknown adapter")
    print(f"# webclip GPU engine beside PyTorch, ViT-B/32 image tower, random weights")
    print(f"adapter: {adapter}; PyTorch: {torch.get('torch', '-')} on {torch.get('device', torch.get('skipped', '-'))}")
    print(f"tensor cores (f16): {(runs['f16'] or {}).get('tensor_cores') or '-'}")
    kernels_path = os.path.join(out, "gpu-kernels.txt")
    kernels = None
    if os.path.exists(kernels_path):
        log = open(kernels_path).read()
        found = re.findall(r"^test result: (.*)$", log, re.M)
        kernels = found[-1] if found else "no result (see gpu-kernels.txt)"
        skipped = re.search(r"skipping the tensor-core matmul test: (.*)$", log, re.M)
        kernels += f"; tensor-core matmul {'skipped: ' + skipped.group(1) if skipped else 'checked'}"
    print(f"GPU kernels against the CPU engine: {kernels or 'not run'}\n")
    plain = runs["f16-plain"]
    print("| batch | webclip f32 | webclip f16 |" + (" webclip f16, no tensor cores |" if plain else "")
          + " torch fp32 (TF32 off) | torch TF32 | torch fp16 autocast "
          "| webclip f32 / torch fp32 | webclip f16 / torch fp16 |")
    print("|---:" * (9 if plain else 8) + "|")
    table = []
    for b in batches:
        w32 = (runs["f32"] or {}).get("image_ms", {}).get(b)
        w16 = (runs["f16"] or {}).get("image_ms", {}).get(b)
        t32, ttf, t16 = (tms.get((m, b)) for m in ("fp32", "tf32", "fp16-autocast"))
        # Throughput ratios: above 1 means webclip embeds more images per second.
        w16p = (plain or {}).get("image_ms", {}).get(b)
        print(f"| {b} | {cell(b, w32)} | {cell(b, w16)} |" + (f" {cell(b, w16p)} |" if plain else "")
              + f" {cell(b, t32)} | {cell(b, ttf)} | {cell(b, t16)} | {ratio(w32, t32)} | {ratio(w16, t16)} |")
        table.append({"batch": b, "webclip_f32_ms": w32, "webclip_f16_ms": w16, "webclip_f16_plain_ms": w16p,
                      "torch_fp32_ms": t32, "torch_tf32_ms": ttf, "torch_fp16_autocast_ms": t16})
    mm = {w: {m["what"]: m for m in (r or {}).get("matmuls", [])} for w, r in runs.items()}
    if mm["f32"]:
        print("\n| webclip matmul (rows x in -> out) | f32 GFLOP/s | f16 GFLOP/s |\n|---|---:|---:|")
        for what, m in mm["f32"].items():
            f16 = mm["f16"].get(what, {}).get("gflops")
            print(f"| {what} ({m['m']} x {m['k']} -> {m['n']}) | {m['gflops']:.1f} | {f16 if f16 is not None else '-'} |")
    with open(os.path.join(out, "gpu-bench.json"), "w") as f:
        json.dump({"adapter": adapter, "gpu_kernels": kernels, "webclip": runs, "torch": torch, "table": table}, f, indent=1)
    print(f"\nwrote {os.path.join(out, 'gpu-bench.json')}")


if __name__ == "__main__":
    main()
