"""``geoseg train`` and ``geoseg evaluate``: thin layers over :mod:`geoseg.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geoseg.cli.options import AliasOption, Flag, given, option_fields, options_from
from geoseg.cli.types import Device, Devices, Duration, Int
from geoseg.train.config import TrainConfig
from geoseg.train.evaluate_options import EvaluateOptions

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


def _no_pretrained_alias(command: Any) -> Any:
    """``--no_pretrained`` (seed 001's spelling, not in help) for the ``--pretrained`` option just declared."""
    command.__click_params__[-1].secondary_opts.append("--no_pretrained")
    return command


# TrainConfig fields with a hand-made form below: the positional CUBES, the weights (a bool or a
# file), resume (a bool, "auto" or a file) and the architecture's KEY=VALUE options
_BY_HAND = ("schema_version", "cubes", "pretrained", "resume", "model_options")
# defaults shown in hand-written help: read from TrainConfig, never copied
_PATIENCE = TrainConfig.model_fields["patience"].default
_ENCODER = TrainConfig.model_fields["encoder"].default
_PRETRAINED = "pretrained" if TrainConfig.model_fields["pretrained"].default is True else "no-pretrained"


# LightningCLI's subcommands, as torchgeo and TerraTorch users type them (`geoseg train fit -c config.yaml`)
_LIGHTNING_SUBCOMMANDS = {
    "fit": None,
    "validate": "geoseg evaluate MODEL_DIR/best CUBES --split val --out EVAL_DIR",
    "test": "geoseg evaluate MODEL_DIR/best CUBES --split test --out EVAL_DIR",
    "predict": "geoseg predict --model MODEL_DIR --scene SCENE --out MAP.tif",
}


def _subcommand(cubes: Path | None) -> Path | None:
    """CUBES, or None for LightningCLI's ``fit`` (the data then come from the config)."""
    from geoseg.errors import ConfigError

    word = str(cubes) if cubes is not None else ""
    if word not in _LIGHTNING_SUBCOMMANDS or Path(word).exists():
        return cubes
    if _LIGHTNING_SUBCOMMANDS[word] is not None:
        raise ConfigError(f"'geoseg train {word}': geoseg train only fits (LightningCLI's fit)",
                          hint=_LIGHTNING_SUBCOMMANDS[word])
    return None


class _TrainCommand(click.Command):
    """``--pretrained torchgeo:NAME[=FILE]`` is ``--weights torchgeo:...``; a bare ``--pretrained`` stays a flag."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        for i, arg in enumerate(args):
            if arg.startswith("--pretrained=torchgeo:"):
                args[i] = "--weights=" + arg.split("=", 1)[1]
            elif arg == "--pretrained" and i + 1 < len(args) and args[i + 1].startswith("torchgeo:"):
                args[i] = "--weights"
        return super().parse_args(ctx, args)


@click.command("train", cls=_TrainCommand)
@click.argument("cubes", type=_path, required=False)
@click.option("--config", "-c", "config_file", type=_path,
              help="YAML with the same options, or a LightningCLI config of torchgeo/TerraTorch "
                   "(docs/training.md); CLI options override it.")
@click.option("--print-config", "--print_config", "print_config", cls=AliasOption, is_flag=True,
              help="Print the resolved options (file + flags + defaults) as a geoseg YAML and exit.")
@_no_pretrained_alias
@click.option("--pretrained/--no-pretrained", cls=AliasOption, default=None,
              help=f"timm hub weights (needs the network) [{_PRETRAINED}]; --pretrained torchgeo:NAME[=FILE] "
                   "loads torchgeo's Sentinel-2 weights, e.g. torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO.")
@click.option("--weights", type=_path, help="Local pretrained weights file (backbone or whole model), or "
                                            "torchgeo:NAME[=FILE] (docs/models.md).")
@click.option("--model-option", "model_option", multiple=True, help="Other architecture option KEY=VALUE (repeatable).")
@click.option("--fp16", is_flag=True, default=None, help="Alias of --precision 16-mixed.")
@click.option("--bf16", is_flag=True, default=None, help="Alias of --precision bf16-mixed.")
@click.option("--deepspeed", is_flag=True, default=None, help="Alias of --strategy deepspeed_stage_2 (needs DeepSpeed).")
@click.option("--resume", is_flag=True, default=None, help="Continue from MODEL_DIR/checkpoints/last.ckpt.")
@click.option("--auto-resume", is_flag=True, default=None, help="Resume when a checkpoint exists, else start (SLURM requeue).")
@click.option("--resume-from", type=_path, help="Continue from this Lightning checkpoint.")
@options_from(TrainConfig, exclude=_BY_HAND, flags={
    "out": Flag(aliases=("-o", "--save_path")),
    "model": Flag(aliases=("--architecture",)),
    "encoder": Flag(aliases=("--backbone",), help="timm encoder (backbone); 'default' = the architecture's own "
                                                  f"[{_ENCODER}]"),
    "lr": Flag(aliases=("--learning-rate",)),
    "patience": Flag(type=Int(0, hint=f"validations without improvement, 0 = off, e.g. --patience {_PATIENCE}"),
                     help=f"early stopping after N validations without improvement; 0 = off [{_PATIENCE}]"),
    "devices": Flag(type=Devices()),
    "max_time": Flag(type=Duration()),
    "overwrite": Flag(is_flag=True),
    "downsample": Flag(is_flag=True),
})
def train_cmd(cubes: Path | None, config_file: Path | None, print_config: bool, **options: Any) -> None:
    """Train a segmentation model on CUBES, a CubeStore or an (N, C+1, H, W) .npy/.npz array;
    write MODEL_DIR (see docs/training.md).

    \b
    Examples:
      geoseg train cubes --out model
      geoseg train -c train.yaml --epochs 30
      geoseg train fit -c torchgeo_config.yaml          # LightningCLI's layout and subcommand
      geoseg train -c torchgeo_config.yaml --print-config > train.yaml
    """
    _model_options(options.get("model_option") or ())  # a malformed KEY=VALUE is refused before torch is imported
    from geoseg.train.config import load_train_config, resolved_yaml

    cubes = _subcommand(cubes)

    o = {k: v for k, v in options.items() if v is not None}
    if o.pop("fp16", None):
        o["precision"] = "16-mixed"
    if o.pop("bf16", None):
        o["precision"] = "bf16-mixed"
    if o.pop("deepspeed", None):  # seed 001's flag: ZeRO stage 2
        import importlib.util

        from geoseg.errors import ConfigError

        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("--deepspeed needs DeepSpeed, which is not installed",
                              hint="pip install deepspeed (CUDA), or drop --deepspeed (--strategy ddp for several GPUs)")
        o["strategy"] = "deepspeed_stage_2"
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
    cfg = load_train_config(config_file, cubes=cubes, **o)
    # explicit "off" values are None and would be skipped by load_train_config
    if patience_off:
        cfg.patience = None
    if encoder_default:
        cfg.encoder = None
    if print_config:
        click.echo(resolved_yaml(cfg), nl=False)
        return
    from geoseg.errors import WeightsDownloadError
    from geoseg.train import train

    try:
        result = train(cfg)
    except WeightsDownloadError as err:  # the API's hint names pretrained=<file>; here it is a flag
        raise WeightsDownloadError(err.message, hint="this machine may have no network: give the weights as a "
                                   "local file with --weights FILE (.safetensors or .pth) instead of --pretrained") from err
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
@click.argument("model_dir", type=_path, required=False)
@click.argument("cubes", type=_path, required=False)
@click.option("--model_path", "model_path", type=_path, hidden=True, help="MODEL_DIR (seed 001's spelling).")
@click.option("--out", "-o", "--output_path", "out", cls=AliasOption, type=_path, required=True,
              help="EVAL_DIR: metrics.json, confusion_matrix.png, report, examples/.")
@click.option("--val-csv", "--val_csv", "val_csv", cls=AliasOption, type=_path,
              help="Score the chips listed in this CSV instead of CUBES (docs/training.md).")
@click.option("--image-root", "--image_root", "image_root", cls=AliasOption, type=_path,
              help="Folder of the --val-csv chips [images/ beside the CSV].")
@click.option("--mask-root", "--mask_root", "mask_root", cls=AliasOption, type=_path,
              help="Folder of the --val-csv masks [masks/ beside the CSV].")
@click.option("--save_examples", "examples_switch", is_flag=True, default=False, hidden=True,
              help="Seed 001's switch: draw the example figures (as many as --save-examples, "
                   f"{EvaluateOptions.model_fields['save_examples'].default} by default).")
@options_from(EvaluateOptions, flags={"device": Flag(type=Device()), "fp16": Flag(is_flag=True),
                                      "compile": Flag(is_flag=True), "save_examples": Flag(snake=False)})
def evaluate_cmd(model_dir: Path | None, cubes: Path | None, model_path: Path | None, out: Path,
                 val_csv: Path | None, image_root: Path | None, mask_root: Path | None, examples_switch: bool,
                 **options: Any) -> None:
    """Score the model bundle MODEL_DIR (e.g. MODEL_DIR/best) on a split of CUBES.

    MODEL_DIR may also be the training run itself: its best/ bundle is used (final/ when no
    validation ran), as by geoseg predict. Instead of CUBES, a CSV (or --val-csv) scores the
    chips it lists (with --image-root and --mask-root).
    """
    opts = EvaluateOptions(**given(options, option_fields(evaluate_cmd)))
    del examples_switch  # the seed's switch asks for what geoseg does anyway (--save-examples)
    from geoseg.errors import ConfigError

    if model_path is not None:  # seed 001: --model_path MODEL [CUBES]
        if cubes is not None:
            raise ConfigError("--model_path and two positional paths: give the model once",
                              hint="geoseg evaluate MODEL_DIR CUBES --out EVAL_DIR")
        model_dir, cubes = model_path, model_dir
    if model_dir is None:
        raise ConfigError("no model given", hint="geoseg evaluate MODEL_DIR CUBES --out EVAL_DIR")
    if val_csv is None and cubes is not None and cubes.suffix.lower() == ".csv":  # a chip list given as CUBES
        val_csv, cubes = cubes, None
    if val_csv is None and (image_root is not None or mask_root is not None):
        raise ConfigError("--image-root and --mask-root go with --val-csv (the chips to score)",
                          hint="add --val-csv CSV, or give a CubeStore as CUBES")
    if val_csv is not None and cubes is not None:
        raise ConfigError(f"both CUBES ({cubes}) and --val-csv given", hint="score either a CubeStore or chips")
    if val_csv is None and cubes is None:
        raise ConfigError("nothing to score", hint="geoseg evaluate MODEL_DIR CUBES --out EVAL_DIR, "
                                                   "or --val-csv CSV for chips")
    from geoseg.train import evaluate

    source: Any = cubes
    if val_csv is not None:
        from geoseg.data.chips import ChipList

        source = ChipList(val_csv, image_root, mask_root)
    result = evaluate(model_dir, source, out, opts)
    split = opts.split
    s = result.scores
    what = f"{split}: {result.metrics['num_cubes']} cubes" if val_csv is None else \
        f"{val_csv.name}: {result.metrics['num_cubes']} chips"
    click.echo(f"{what}, {s.num_pixels} labelled pixels, {result.seconds:.1f} s")
    click.echo(f"mIoU {s.miou:.4f}  OA {s.oa:.4f}  F1 {s.f1_macro:.4f}  kappa {s.kappa:.4f}")
    for name, row in result.metrics["per_class"].items():
        iou = "n/a" if row["iou"] is None else f"{row['iou']:.4f}"
        click.echo(f"  {name:<20} IoU {iou:>6}  support {row['support']}")
    click.echo(f"wrote {out}")
