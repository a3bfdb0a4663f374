"""PyTorch's side of tests/gpu-bench/run.sh: the CLIP image tower (transformers' CLIPModel,
vision model plus projection, what webclip's image embedding is) on the same weights folder,
per batch size and precision, on the GPU (CPU float32 where there is no CUDA).

  python3 torch_bench.py MODEL_DIR [--batches 1,32,256] [--iterations 10] [--out FILE.json]

Precisions on CUDA: float32 with TF32 off (the exact reference), TF32 matmuls, and fp16
autocast. Each figure is the median of `iterations` timed passes (CUDA events) after warm-up.
"""
import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--out")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    try:
        import torch
        from transformers import CLIPModel
    except ImportError as e:
        result = {"skipped": f"PyTorch or transformers missing: {e}"}
        print(result["skipped"], file=sys.stderr)
        write(args.out, result)
        return

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = CLIPModel.from_pretrained(args.model, torch_dtype=torch.float32).to(device).eval()
    size = model.config.vision_config.image_size

    def embed(x):
        return model.visual_projection(model.vision_model(pixel_values=x).pooler_output)

    modes = ["fp32", "tf32", "fp16-autocast"] if cuda else ["fp32"]
    rows = []
    for mode in modes:
        tf32 = mode == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        for batch in batches:
            x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
            times = []
            with torch.inference_mode(), torch.autocast(
                device.type, dtype=torch.float16, enabled=mode == "fp16-autocast"
            ):
                for i in range(3 + args.iterations):
                    if cuda:
                        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        start.record()
                        embed(x)
                        end.record()
                        torch.cuda.synchronize()
                        ms = start.elapsed_time(end)
                    else:
                        t = time.perf_counter()
                        embed(x)
                        ms = (time.perf_counter() - t) * 1e3
                    if i >= 3:
                        times.append(ms)
            ms = statistics.median(times)
            row = {"mode": mode, "batch": batch, "ms": ms, "images_per_s": batch * 1e3 / ms}
            rows.append(row)
            print(f"torch {mode:>13} batch {batch:>3}: {ms:9.2f} ms ({row['images_per_s']:.1f} images/s)", file=sys.stderr)
    result = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)",
        "rows": rows,
    }
    write(args.out, result)


def write(path, result):
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
