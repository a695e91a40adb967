"""``geoseg train`` and ``geoseg evaluate``: thin layers over :mod:`geoseg.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geoseg.cli.types import Device, Devices, Duration, Float, Int

__all__ = ["train_cmd", "evaluate_cmd"]

_path = click.Path(path_type=Path)


def _model_options(values: tuple[str, ...]) -> dict[str, Any] | None:
    import yaml

    from geoseg.errors import ConfigError

    if not values:
        return None
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-option {item!r} is not KEY=VALUE", hint="e.g. --model-option decoder_attention=scse")
        out[key.strip()] = yaml.safe_load(raw)
    return out


@click.command("train")
@click.argument("cubes", type=_path, required=False)
@click.option("--out", "-o", type=_path, help="MODEL_DIR for best/, final/, epoch_N/, checkpoints/, plots and logs.")
@click.option("--config", "-c", "config_file", type=_path, help="YAML with the same options (CLI options override it).")
@click.option("--model", "--architecture", "model", help="rsprunetpp | unet3plus | deeplabv3plus | pspnet | unet [unet].")
@click.option("--encoder", "--backbone", "encoder", help="timm encoder [resnet18]; 'default' = the architecture's own.")
@click.option("--pretrained/--no-pretrained", default=None, help="timm hub weights (needs the network) [no-pretrained].")
@click.option("--weights", type=_path, help="Local pretrained weights file (backbone or whole model).")
@click.option("--freeze-backbone/--no-freeze-backbone", default=None, help="Train the decoder only.")
@click.option("--deep-supervision/--no-deep-supervision", default=None, help="Deep-supervision heads (rsprunetpp, unet3plus).")
@click.option("--cat-channels", type=Int(1, hint="e.g. --cat-channels 64"), help="UNet3+ channels per skip connection [64].")
@click.option("--aux-head/--no-aux-head", default=None, help="Aux classification head (class presence).")
@click.option("--model-option", "model_option", multiple=True, help="Other architecture option KEY=VALUE (repeatable).")
@click.option("--epochs", type=Int(1, hint="e.g. --epochs 12"), help="Training epochs [12].")
@click.option("--batch-size", type=Int(1, hint="e.g. --batch-size 8"), help="Batch size per device [8].")
@click.option("--target-size", type=Int(8, hint="pixels, e.g. --target-size 256"), help="Training size in pixels (random crop or resize) [cube size].")
@click.option("--target-mode", type=click.Choice(["crop", "resize"]), help="How --target-size is reached [crop].")
@click.option("--num-workers", type=Int(0, hint="DataLoader worker processes, e.g. --num-workers 2"), help="DataLoader workers [0 in memory, else 2].")
@click.option("--patience", type=Int(0, hint="validations without improvement, 0 = off, e.g. --patience 15"), help="Early stopping after N validations without improvement; 0 = off [15].")
@click.option("--validate-every", type=Int(1, hint="epochs, e.g. --validate-every 1"), help="Validate every N epochs [1].")
@click.option("--save-every", type=Int(1, hint="epochs, e.g. --save-every 5"), help="Also write epoch_N/ every N epochs [off].")
@click.option("--monitor", type=click.Choice(["val_miou", "val_loss"]), help="Metric of best/ and early stopping [val_miou].")
@click.option("--lr", "--learning-rate", "lr", type=Float(0, min_open=True, hint="e.g. --lr 0.002"), help="(Peak) learning rate [0.002].")
@click.option("--weight-decay", type=Float(0, hint="e.g. --weight-decay 1e-4"), help="AdamW weight decay [1e-4].")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), help="Optimiser [adamw].")
@click.option("--schedule", type=click.Choice(["cosine", "onecycle", "plateau", "none"]), help="LR schedule [cosine].")
@click.option("--warmup-epochs", type=Float(0, hint="epochs, e.g. --warmup-epochs 1"), help="Linear warm-up before the cosine decay [0].")
@click.option("--loss", type=click.Choice(["ce_dice", "ce", "dice", "focal", "focal_dice"]), help="Mask loss [ce_dice].")
@click.option("--focal-gamma", type=Float(0, hint="e.g. --focal-gamma 2"), help="Focal loss gamma [2].")
@click.option("--class-weights", type=click.Choice(["none", "auto"]), help="auto: from the store's class counts [none].")
@click.option("--seed", type=Int(0, 2**32 - 1), help="Random seed [0].")
@click.option("--precision", type=click.Choice(["auto", "32", "16-mixed", "bf16-mixed"]), help="auto: mixed on CUDA, 32 on CPU.")
@click.option("--fp16", is_flag=True, default=None, help="Alias of --precision 16-mixed.")
@click.option("--bf16", is_flag=True, default=None, help="Alias of --precision bf16-mixed.")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the model.")
@click.option("--channels-last", type=click.Choice(["auto", "yes", "no"]), help="Channels-last memory format [auto: CUDA].")
@click.option("--accelerator", type=click.Choice(["auto", "cpu", "gpu", "cuda", "mps"]), help="Device type [auto].")
@click.option("--devices", type=Devices(), help="Devices per node: N, auto, or a list 0,1 [auto].")
@click.option("--num-nodes", type=Int(1, hint="e.g. --num-nodes 2"), help="Nodes (SLURM: srun starts one task per device) [1].")
@click.option("--strategy", type=click.Choice(["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true",
                                                "deepspeed_stage_2", "deepspeed_stage_3", "fsdp"]),
              help="Distributed strategy [auto].")
@click.option("--sync-batchnorm/--no-sync-batchnorm", default=None, help="SyncBatchNorm across devices.")
@click.option("--resume", is_flag=True, default=None, help="Continue from MODEL_DIR/checkpoints/last.ckpt.")
@click.option("--auto-resume", is_flag=True, default=None, help="Resume when a checkpoint exists, else start (SLURM requeue).")
@click.option("--resume-from", type=_path, help="Continue from this Lightning checkpoint.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an earlier run in MODEL_DIR.")
@click.option("--downsample", is_flag=True, default=None, help="Debug: a random subset of the cubes.")
@click.option("--downsample-size", type=Int(1, hint="cubes per split, e.g. --downsample-size 100"), help="Cubes per split with --downsample [100].")
@click.option("--limit-batches", type=Int(1, hint="batches per epoch, e.g. --limit-batches 10"), help="Debug: batches per epoch.")
@click.option("--max-time", type=Duration(), help="Stop after DD:HH:MM:SS (resume later).")
@click.option("--augment/--no-augment", default=None, help="Random flips/rotations [augment].")
@click.option("--in-memory", type=click.Choice(["auto", "yes", "no"]), help="Hold the cubes in RAM [auto: < 2 GB].")
@click.option("--progress/--no-progress", default=None, help="Progress bar [progress].")
@click.option("--profiler", type=click.Choice(["simple", "advanced"]), help="Lightning profiler report → MODEL_DIR/profile.txt.")
def train_cmd(cubes: Path | None, out: Path | None, config_file: Path | None, **options: Any) -> None:
    """Train a segmentation model on the CubeStore CUBES; write MODEL_DIR (see docs/training.md)."""
    _model_options(options.get("model_option") or ())  # a malformed KEY=VALUE is refused before torch is imported
    from geoseg.train import load_train_config, train

    o = {k: v for k, v in options.items() if v is not None}
    o["compile"] = o.pop("compile_", None)
    if o.pop("fp16", None):
        o["precision"] = "16-mixed"
    if o.pop("bf16", None):
        o["precision"] = "bf16-mixed"
    if "patience" in o and o["patience"] == 0:
        o["patience"] = None
        patience_off = True
    else:
        patience_off = False
    if o.get("encoder") == "default":
        o["encoder"] = None
        encoder_default = True
    else:
        encoder_default = False
    weights = o.pop("weights", None)
    if weights is not None:
        o["pretrained"] = weights
    if o.pop("auto_resume", None):
        o["resume"] = "auto"
    resume_from = o.pop("resume_from", None)
    if resume_from is not None:
        o["resume"] = resume_from
    o["model_options"] = _model_options(o.pop("model_option", ()))
    cfg = load_train_config(config_file, cubes=cubes, out=out, **o)
    # explicit "off" values are None and would be skipped by load_train_config
    if patience_off:
        cfg.patience = None
    if encoder_default:
        cfg.encoder = None
    result = train(cfg)
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:
        return
    m = result.metrics
    click.echo(f"trained {cfg.model} ({cfg.encoder or 'default encoder'}) for {result.epochs} epochs in "
               f"{result.seconds:.0f} s{' (early stop)' if result.stopped_early else ''}")
    if result.best is not None:
        click.echo(f"best epoch {result.best_epoch}: val mIoU {m.get('miou', float('nan')):.4f}, OA "
                   f"{m.get('oa', float('nan')):.4f}, F1 {m.get('f1', float('nan')):.4f}, kappa "
                   f"{m.get('kappa', float('nan')):.4f}")
        click.echo(f"best model:  {result.best}")
    click.echo(f"final model: {result.final}")
    click.echo(f"plots:       {result.out / 'training_plots.png'}")


@click.command("evaluate")
@click.argument("model_dir", type=_path)
@click.argument("cubes", type=_path)
@click.option("--out", "-o", type=_path, required=True, help="EVAL_DIR: metrics.json, confusion_matrix.png, report, examples/.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--batch-size", type=Int(1, hint="e.g. --batch-size 16"), default=16, show_default=True)
@click.option("--save-examples", type=Int(0, hint="figures, e.g. --save-examples 4"), default=0, show_default=True, help="Write N example figures (RGB | truth | prediction).")
@click.option("--fp16", is_flag=True, help="Reduced precision (float16 on CUDA, bfloat16 on CPU).")
@click.option("--device", type=Device(), default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--num-workers", type=Int(0, hint="DataLoader worker processes, e.g. --num-workers 2"), default=None, help="DataLoader workers [automatic].")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
def evaluate_cmd(model_dir: Path, cubes: Path, out: Path, split: str, batch_size: int, save_examples: int,
                 fp16: bool, device: str, num_workers: int | None, compile_: bool) -> None:
    """Score the model bundle MODEL_DIR (e.g. MODEL_DIR/best) on a split of CUBES.

    MODEL_DIR may also be the training run itself: its best/ bundle is used (final/ when no
    validation ran), as by geoseg predict.
    """
    from geoseg.train import evaluate

    result = evaluate(model_dir, cubes, out, split=split, batch_size=batch_size, save_examples=save_examples,
                      fp16=fp16, device=device, num_workers=num_workers, compile=compile_)
    s = result.scores
    click.echo(f"{split}: {result.metrics['num_cubes']} cubes, {s.num_pixels} labelled pixels, {result.seconds:.1f} s")
    click.echo(f"mIoU {s.miou:.4f}  OA {s.oa:.4f}  F1 {s.f1_macro:.4f}  kappa {s.kappa:.4f}")
    for name, row in result.metrics["per_class"].items():
        iou = "n/a" if row["iou"] is None else f"{row['iou']:.4f}"
        click.echo(f"  {name:<20} IoU {iou:>6}  support {row['support']}")
    click.echo(f"wrote {out}")
