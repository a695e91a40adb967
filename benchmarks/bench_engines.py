"""CPU inference options for the model's forward pass: which ones win, and what they cost in accuracy.

    python benchmarks/bench_engines.py [--arch unet --encoder resnet18] [--bundle RUN/train/model/best]
                                       [--batch-size 4] [--window 256] [--rounds 5]
                                       [--out docs/benchmarks_engines.md]

``geoseg predict --engine`` offers ``torch``, ``torch-bf16`` (the "torch bf16 channels-last" row)
and ``onnxruntime``, the winners of this script, which measures every CPU option against torch eager float32 (the baseline) in
the same run, with ``--rounds`` rounds alternating the options so that all see the same load:

* ``torch channels-last``: NHWC memory layout (what the CUDA path uses);
* ``torch bf16``: ``torch.autocast("cpu", bfloat16)``, with and without channels-last (fast only
  on CPUs with AVX512-BF16/AMX);
* ``torch.compile``: inductor, static shapes (its compile time is reported apart);
* ``torch int8 dynamic``: ``torch.ao.quantization.quantize_dynamic`` over Conv2d and Linear;
* ``onnxruntime``: the graph ``geoseg`` exports (opset 17), CPU provider, torch's thread count;
* ``onnxruntime int8``: the same graph after ``onnxruntime.quantization.quantize_dynamic``.

Accuracy is the argmax agreement with the baseline's map and the largest logit difference
(relative to the largest logit), on real features: the windows of a generated demo scene
normalised by the bundle. With ``--bundle`` (e.g. the demo pipeline's trained model) those are
the figures a user would see; without it the model has random weights, which keeps the speed
figures valid but makes agreement a pessimistic bound (random logits sit close together).
Every option must agree on ≥ 99.9 % of valid pixels to be offered as an engine.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import machine  # noqa: E402

AGREEMENT = 0.999  # what an engine must reach (geoseg.bundle.engines.PROBE_AGREEMENT)


def _bundle(args: argparse.Namespace, work: Path) -> Path:
    if args.bundle is not None:
        return args.bundle
    from bench_predict import _bundle as random_bundle

    return random_bundle(work, args.arch, args.encoder, window=args.window)


def _features(runner, window: int, batch: int, work: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` normalised windows of a generated demo scene, and their valid-pixel mask."""
    from rasterio.windows import Window

    from geoseg.demo import generate_demo_scene
    from geoseg.features import get_recipe, read_features
    from geoseg.io import open_scene

    side = -(-window * 2 // 6) * 6
    demo = generate_demo_scene(work / "scene", size=side, seed=7, progress=False)
    scene = open_scene(demo.scene)
    recipe = get_recipe("s2_24")
    tiles = []
    for i in range(batch):
        r, c = divmod(i % 4, 2)
        feats, _ = read_features(scene, Window(c * window, r * window, window, window), recipe)
        tiles.append(feats)
    raw = np.stack(tiles)
    valid = torch.from_numpy(np.abs(raw[:, : recipe.num_mask_channels]).sum(1) > 0)
    return runner.prepare(raw), valid


def _options(model: torch.nn.Module, x: torch.Tensor, threads: int, work: Path) -> dict[str, Callable[[], torch.Tensor]]:
    import copy

    opts: dict[str, Callable[[], torch.Tensor]] = {"torch float32 (baseline)": lambda: model(x)}
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    opts["torch channels-last"] = lambda: cl_model(x_cl)

    def bf16(m: torch.nn.Module, inp: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return m(inp).float()

    opts["torch bf16"] = lambda: bf16(model, x)
    opts["torch bf16 channels-last"] = lambda: bf16(cl_model, x_cl)
    compiled = torch.compile(copy.deepcopy(model), dynamic=False)
    opts["torch.compile"] = lambda: compiled(x)
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear, torch.nn.Conv2d},
                                                       dtype=torch.qint8)
    opts["torch int8 dynamic"] = lambda: quantized(x)
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        return opts
    buf = io.BytesIO()
    torch.onnx.export(model, x[:1], buf, opset_version=17, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    fp32, pre, int8 = work / "model.onnx", work / "model-pre.onnx", work / "model-int8.onnx"
    fp32.write_bytes(buf.getvalue())
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(fp32), so, providers=["CPUExecutionProvider"])
    x_np = x.numpy()
    opts["onnxruntime"] = lambda: torch.from_numpy(session.run(None, {"x": x_np})[0])
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_dynamic(str(pre), str(int8), weight_type=QuantType.QInt8)
    session8 = ort.InferenceSession(str(int8), so, providers=["CPUExecutionProvider"])
    opts["onnxruntime int8 dynamic"] = lambda: torch.from_numpy(session8.run(None, {"x": x_np})[0])
    return opts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--bundle", type=Path, default=None, help="a trained model bundle (default: random weights)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks_engines.md")
    parser.add_argument("--append", action="store_true", help="add this model's table to --out instead of replacing it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from geoseg.bundle import ModelRunner, load_bundle

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp, torch.inference_mode():
        work = Path(tmp)
        bundle = load_bundle(_bundle(args, work))
        runner = ModelRunner(bundle, device="cpu", fp16=False)
        model = runner.model
        x, valid = _features(runner, args.window, args.batch_size, work)
        opts = _options(model, x, args.threads, work)
        label = f"{bundle.config.model.name}/{bundle.config.model.encoder}"
        warm: dict[str, float] = {}
        outputs: dict[str, torch.Tensor] = {}
        for name, run in opts.items():  # the first call (compile, export warm-up) is timed apart
            t0 = time.perf_counter()
            outputs[name] = run().float()
            warm[name] = time.perf_counter() - t0
        times: dict[str, list[float]] = {name: [] for name in opts}
        for _ in range(args.rounds):
            for name, run in opts.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
    load_end = os.getloadavg()
    base_name = next(iter(opts))
    ref = outputs[base_name]
    base = statistics.median(times[base_name])
    weights = "trained weights (" + str(args.bundle) + ")" if args.bundle else "random weights"
    rows = [f"### {label}, {weights}: batch ({args.batch_size}, 24, {args.window}, {args.window}), "
            f"{args.threads} threads, {args.rounds} alternating rounds\n",
            "| option | median forward | vs torch float32 | first call | argmax agreement (valid px) | max logit diff |",
            "|---|---|---|---|---|---|"]
    for name in opts:
        med = statistics.median(times[name])
        agree = (outputs[name].argmax(1) == ref.argmax(1))[valid].float().mean().item()
        diff = ((outputs[name] - ref).abs().max() / ref.abs().max()).item()
        flag = "" if agree >= AGREEMENT else " (below 99.9 %)"
        rows.append(f"| {name} | {med:.3f} s | {med / base:.2f}× | {warm[name]:.1f} s | {agree:.5f}{flag} | {diff:.1e} |")
    rows.append(f"\nLoad average (1/5/15 min): start {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, "
                f"end {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}.\n")
    table = "\n".join(rows)
    print(table)
    header = (f"# CPU inference options (`benchmarks/bench_engines.py`)\n\nMachine: {machine()}.\n"
              f"Measured {time.strftime('%Y-%m-%d')}. Baseline: torch eager float32 in the same run.\n\n")
    if args.append and args.out.exists():
        args.out.write_text(args.out.read_text().rstrip() + "\n\n" + table + "\n")
    else:
        args.out.write_text(header + table + "\n")


if __name__ == "__main__":
    main()
