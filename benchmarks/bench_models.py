"""Benchmark the geoseg model zoo on CPU against segmentation_models_pytorch.

For each architecture, with its default and a small encoder: parameter count, forward time
(eval, no grad) and forward+backward time (train mode) on a (4, 24, 256, 256) batch, and
the ratio to the SMP model of the same family with the same timm encoder (``tu-<name>``)
built in the same run. Prints a markdown table and writes it, with the machine
description, to ``docs/benchmarks_models.md``.

    python benchmarks/bench_models.py            # full size (slow on 2 cores)
    python benchmarks/bench_models.py --quick    # (2, 24, 128, 128), one repeat
    python benchmarks/bench_models.py --unet3plus-params   # UNet 3+ backbones: stated vs measured sizes
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from geoseg.models import create_model

DOCS = Path(__file__).resolve().parents[1] / "docs"
IN_CHANNELS, CLASSES = 24, 6

# (label, geoseg name, geoseg options, smp factory or None)
Smp = Callable[[str], nn.Module]
CASES: list[tuple[str, str, dict, Smp | None]] = [
    ("rsprunetpp", "rsprunetpp", {"masked_bn": True},
     lambda enc: smp.UnetPlusPlus(f"tu-{enc}", encoder_weights=None, in_channels=IN_CHANNELS,
                                  classes=CLASSES, decoder_attention_type="scse")),
    ("unet3plus", "unet3plus", {}, None),
    ("deeplabv3plus", "deeplabv3plus", {},
     lambda enc: smp.DeepLabV3Plus(f"tu-{enc}", encoder_weights=None, in_channels=IN_CHANNELS,
                                   classes=CLASSES, encoder_output_stride=16)),
    ("pspnet (U-Net decoder)", "pspnet", {},
     lambda enc: smp.PSPNet(f"tu-{enc}", encoder_weights=None, in_channels=IN_CHANNELS, classes=CLASSES)),
    ("pspnet (plain 8x head)", "pspnet", {"use_unet": False},
     lambda enc: smp.PSPNet(f"tu-{enc}", encoder_weights=None, in_channels=IN_CHANNELS, classes=CLASSES)),
    ("pspnet (plain head, undilated)", "pspnet", {"use_unet": False, "keep_dilation": False},
     lambda enc: smp.PSPNet(f"tu-{enc}", encoder_weights=None, in_channels=IN_CHANNELS, classes=CLASSES,
                            encoder_depth=5, upsampling=32)),
    ("unet", "unet", {},
     lambda enc: smp.Unet(f"tu-{enc}", encoder_weights=None, in_channels=IN_CHANNELS, classes=CLASSES)),
]
SMALL = {"rsprunetpp": "resnest14d", "unet3plus": "efficientnet_b0", "deeplabv3plus": "resnet18",
         "pspnet": "resnet18", "unet": "resnet18"}
DEFAULT = {"rsprunetpp": "resnest101e", "unet3plus": "convnext_tiny", "deeplabv3plus": "resnet50",
           "pspnet": "resnet50", "unet": "resnet34"}
UNET3PLUS_SEED = {  # UNet 3+ backbones -> their commonly stated parameters (millions)
    "convnext_tiny": 28, "convnext_small": 50, "convnext_base": 89, "hrnet_w18": 9,
    "hrnet_w32": 29, "hrnet_w48": 65, "efficientnet_b0": 5, "efficientnet_b3": 12,
    "resnet34": 21, "resnet50": 25,
}


def n_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def _fwd(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    return run


def _fwd_bwd(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out.float().mean().backward()

    return run


def time_models(models: list[nn.Module], x: torch.Tensor, repeats: int) -> list[tuple[float, float]]:
    """Median forward (eval, no grad) and forward+backward (train) seconds of each model.

    The models are timed alternately within every repeat, so a change in machine load
    (shared CI runners) affects geoseg and SMP alike and the ratios stay meaningful.
    """
    fns = [(_fwd(m, x), _fwd_bwd(m, x)) for m in models]
    for f, b in fns:  # warm-up: allocations, oneDNN primitive creation
        f(), b()
    times: list[list[list[float]]] = [[[], []] for _ in models]
    for _ in range(repeats):
        for i, pair in enumerate(fns):
            for j, fn in enumerate(pair):
                t0 = time.perf_counter()
                fn()
                times[i][j].append(time.perf_counter() - t0)
    return [(statistics.median(t[0]), statistics.median(t[1])) for t in times]


def machine() -> str:
    """CPU model, cores, torch version and threads."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), smp {smp.__version__}, Python {platform.python_version()}")


def run(quick: bool, only: list[str] | None, repeats: int | None = None,
        encoders: str = "both") -> str:
    """Run the benchmark and return the markdown table."""
    shape = (2, IN_CHANNELS, 128, 128) if quick else (4, IN_CHANNELS, 256, 256)
    repeats = repeats or (1 if quick else 3)
    x = torch.randn(*shape)
    rows = []
    for label, name, options, smp_factory in CASES:
        if only and name not in only:
            continue
        kinds = [("default", DEFAULT[name]), ("small", SMALL[name])]
        for kind, enc in (k for k in kinds if encoders in ("both", k[0])):
            torch.manual_seed(0)
            model = create_model(name, in_channels=IN_CHANNELS, num_classes=CLASSES, encoder=enc, **options)
            models = [model] + ([smp_factory(enc)] if smp_factory is not None else [])
            timings = time_models(models, x, repeats)
            (tf, tb), p = timings[0], n_params(model)
            row = [label, f"{enc} ({kind})", f"{p / 1e6:.2f}M", f"{tf:.2f}", f"{tb:.2f}"]
            if smp_factory is not None:
                (rf, rb), rp = timings[1], n_params(models[1])
                row += [f"{rp / 1e6:.2f}M", f"{rf:.2f}", f"{rb:.2f}", f"{tf / rf:.2f}", f"{tb / rb:.2f}"]
            else:
                row += ["—"] * 5
            del model, models
            rows.append(row)
            print(" | ".join(row), flush=True)
            gc.collect()
    header = ["model", "encoder", "params", "fwd s", "fwd+bwd s", "smp params", "smp fwd s",
              "smp fwd+bwd s", "fwd ratio", "fwd+bwd ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + f"\n\nInput {shape}, median of {repeats} (models timed alternately) after one warm-up.\n"


def unet3plus_params() -> str:
    """Markdown table: the backbones' stated parameters vs measured encoder and UNet 3+ totals."""
    lines = ["| backbone | stated size | timm encoder (features_only) | UNet 3+ total (3 in, 3 classes) |",
             "|---|---|---|---|"]
    for enc, stated in UNET3PLUS_SEED.items():
        model = create_model("unet3plus", in_channels=3, num_classes=3, encoder=enc)
        lines.append(f"| `{enc}` | ~{stated}M | {n_params(model.encoder) / 1e6:.1f}M | "
                     f"{n_params(model) / 1e6:.1f}M |")
        del model
        gc.collect()
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small input, one repeat")
    parser.add_argument("--only", nargs="*", help="architectures to run")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3, quick 1)")
    parser.add_argument("--encoders", choices=["both", "default", "small"], default="both")
    parser.add_argument("--out", type=Path, default=DOCS / "benchmarks_models.md", help="markdown output")
    parser.add_argument("--unet3plus-params", action="store_true", help="print the UNet 3+ parameter table")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks_models.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.unet3plus_params:
        print(unet3plus_params())
        return
    table = run(args.quick, args.only, args.repeats, args.encoders)
    text = f"# Model benchmarks (CPU)\n\nMachine: {machine()}\n\n{table}"
    print(text)
    if not args.no_write:
        keep = ""  # a hand-written "## Analysis" section survives re-runs
        if args.out.exists() and "## Analysis" in (old := args.out.read_text()):
            keep = "\n" + old[old.index("## Analysis"):]
        args.out.write_text(text + keep)


if __name__ == "__main__":
    main()
