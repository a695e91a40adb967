"""LightningCLI configs (torchgeo, TerraTorch) read as geoseg's :class:`~geoseg.train.TrainConfig`.

``geoseg train -c FILE`` accepts the layout of ``torchgeo fit --config`` and ``terratorch fit
--config``: ``trainer:``, ``model:`` and ``data:`` with ``class_path``/``init_args``,
``optimizer:``, ``lr_scheduler:``, ``seed_everything`` and ``ckpt_path``. Each key is looked
up in :data:`RULES`: it sets a geoseg option (the value translated: ``precision: 16`` →
``16-mixed``, ``model: deeplabv3+`` → ``deeplabv3plus``), is checked against the data
(``in_channels``, ``num_classes``), or is refused with the reason. ``null`` and a key's
library default (what LightningCLI's ``--print_config`` writes, e.g. ``fast_dev_run: false``)
ask nothing and are accepted. docs/training.md's table is :func:`markdown_table`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg.errors import ConfigError, GeosegError
from geoseg.train.lightning_rules import CHANNELS_WHY, RULES, SKIP, Refused, Rule
from geoseg.utils.closest import did_you_mean

if TYPE_CHECKING:
    from pydantic import ValidationError

    from geoseg.train.config import TrainConfig

__all__ = ["RULES", "Rule", "LightningConfig", "is_lightning_config", "read_lightning_config", "markdown_table"]

# top-level keys that only a LightningCLI config has, and those it has as mappings (class_path,
# init_args) where a geoseg config has a string (`model: unet`) or nothing
_LIGHTNING_KEYS = ("trainer", "seed_everything", "ckpt_path", "fit")
_LIGHTNING_MAPPINGS = ("model", "data", "optimizer", "lr_scheduler")


# ----------------------------------------------------------------------------- reading a config
def is_lightning_config(data: Any) -> bool:
    """Whether a YAML mapping has LightningCLI's layout (``trainer:``, ``model.init_args`` ...)."""
    if not isinstance(data, Mapping):
        return False
    return any(k in data for k in _LIGHTNING_KEYS) or any(isinstance(data.get(k), Mapping) for k in _LIGHTNING_MAPPINGS)


def _parts_match(pattern: str, key: str) -> bool:
    a, b = pattern.split("."), key.split(".")
    return len(a) == len(b) and all(fnmatch.fnmatchcase(k, p) for p, k in zip(a, b, strict=True))


_EXACT = {r.key: r for r in RULES}
_PATTERNS = [r for r in RULES if "*" in r.key]


def _lookup(key: str) -> Rule | None:
    return _EXACT.get(key) or next((r for r in _PATTERNS if _parts_match(r.key, key)), None)


def _has_children(key: str) -> bool:
    return any(r.key.startswith(key + ".") for r in RULES)


def _siblings(key: str) -> list[str]:
    parts = key.split(".")
    depth = len(parts) - 1
    names = {r.key.split(".")[depth] for r in RULES if r.key.split(".")[:depth] == parts[:depth]
             and len(r.key.split(".")) > depth}
    return sorted(n for n in names if "*" not in n)


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(key as written, key of :data:`RULES`, value) of every setting of a LightningCLI config."""
    for top, value in data.items():
        if top == "trainer" and isinstance(value, Mapping):
            for k, v in value.items():
                if k == "callbacks":
                    yield from _callbacks(v, f"{prefix}trainer.callbacks")
                else:
                    yield f"{prefix}trainer.{k}", f"trainer.{k}", v
        elif top == "trainer" or top in _LIGHTNING_MAPPINGS:
            if value is not None:  # `optimizer: null`, as LightningCLI's --print_config writes
                yield from _component(str(top), value, prefix)
        else:
            yield f"{prefix}{top}", str(top), value


def _component(top: str, value: Any, prefix: str) -> Iterator[tuple[str, str, Any]]:
    """``class_path`` and each of ``init_args`` (also given flat, ``model: {lr: ...}``)."""
    if not isinstance(value, Mapping):
        yield f"{prefix}{top}", f"{top}.class_path", value  # `optimizer: AdamW`, a class path alone
        return
    if "class_path" in value or "init_args" in value:
        args, where = value.get("init_args") or {}, f"{prefix}{top}.init_args"
        for k, v in value.items():
            if k != "init_args":
                yield f"{prefix}{top}.{k}", f"{top}.{k}", v
    else:
        args, where = value, f"{prefix}{top}"
    if not isinstance(args, Mapping):
        yield where, f"{top}.init_args", args
        return
    for name, arg in args.items():
        key = f"{top}.init_args.{name}"
        if isinstance(arg, Mapping) and _has_children(key):  # TerraTorch's model_args, *_hparams
            for sub, leaf in arg.items():
                yield f"{where}.{name}.{sub}", f"{key}.{sub}", leaf
        else:
            yield f"{where}.{name}", key, arg


def _callbacks(value: Any, where: str) -> Iterator[tuple[str, str, Any]]:
    """Each callback's class (``trainer.callbacks.CLASS``) and, where the table has them, its arguments."""
    items = [] if value is None else [value] if isinstance(value, Mapping | str) else list(value)
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            class_path, args = str(item.get("class_path", "")), item.get("init_args")
        else:
            class_path, args = str(item), None
        name = class_path.rsplit(".", 1)[-1] or "?"
        yield f"{where}[{i}] ({name})", f"trainer.callbacks.{name}", True
        if isinstance(args, Mapping) and _has_children(f"trainer.callbacks.{name}"):
            for k, v in args.items():
                yield f"{where}[{i}].init_args.{k}", f"trainer.callbacks.{name}.{k}", v


@dataclass
class LightningConfig:
    """A LightningCLI config read as TrainConfig options, with what is checked after validation.

    Attributes:
        source: The file (for messages).
        options: TrainConfig options (paths as written, relative to the file).
        keys: Each option's LightningCLI key (for messages).
        checks: ``_in_channels``, ``_num_classes``, ``_mode``: value and key.
    """

    source: str
    options: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    checks: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def validation_error(self, err: ValidationError) -> ConfigError:
        """A pydantic error of :attr:`options` as a ConfigError naming the LightningCLI key."""
        first = err.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            return ConfigError(cause.message, path=self.source, hint=cause.hint)
        option = str(first["loc"][0]) if first["loc"] else ""
        key = self.keys.get(option, option)
        message = first["msg"].removeprefix("Value error, ")
        return ConfigError(f"{key}: {message}", path=self.source, hint=f"geoseg's {option}; fix the value in this file")

    def check(self, cfg: TrainConfig) -> None:
        """Compare ``in_channels``/``num_classes`` with the data and ``mode`` with the monitor.

        Raises:
            ConfigError: A value that contradicts the data or the monitor.
        """
        if "_mode" in self.checks:
            mode, key = self.checks["_mode"]
            wanted = "max" if cfg.monitor == "val_miou" else "min"
            if mode != wanted:
                raise ConfigError(f"{key}: mode {mode!r}, but geoseg's monitor {cfg.monitor} is "
                                  f"{'maximised' if wanted == 'max' else 'minimised'}", path=self.source,
                                  hint=f"use mode: {wanted} or remove it")
        if not {"_in_channels", "_num_classes"} & set(self.checks):
            return
        channels, classes, what = _data_facts(cfg)
        for check, actual, noun in (("_in_channels", channels, "channels"), ("_num_classes", classes, "classes")):
            if check in self.checks and actual is not None and self.checks[check][0] != actual:
                value, key = self.checks[check]
                why = f" ({CHANNELS_WHY})" if noun == "channels" else ""
                raise ConfigError(f"{key}: {value}, but {what} has {actual} {noun}{why}", path=self.source,
                                  hint=f"set it to {actual} or remove it")


def _data_facts(cfg: TrainConfig) -> tuple[int | None, int | None, str]:
    """Channels and classes of the training data when cheap to read (None: unknown)."""
    try:
        if cfg.data_root is not None:
            from geoseg.config.schema import load_yaml
            from geoseg.data.chips import ChipDataset
            from geoseg.features.recipes import get_recipe

            spec_file = Path(cfg.data_root) / "dataset.yaml"
            spec = load_yaml(spec_file, ChipDataset) if spec_file.is_file() else ChipDataset()
            recipe = get_recipe(spec.recipe)
            return len(recipe.channel_names), len(spec.classes) or None, f"recipe {recipe.name} of the chips"
        if cfg.cubes is None:
            return None, None, ""
        path = Path(cfg.cubes)
        if path.suffix.lower() == ".npy":
            import numpy as np

            return int(np.load(path, mmap_mode="r").shape[1]) - 1, None, f"the array {path}"
        if path.is_dir():
            from geoseg.tiling.store import CubeStore

            store = CubeStore.open(path, verify=False)
            return store.num_channels, len(store.classes), f"the CubeStore {path}"
    except (GeosegError, OSError, ValueError, IndexError):
        pass  # the trainer reports unreadable data itself
    return None, None, ""


def read_lightning_config(data: Mapping[str, Any], source: str) -> LightningConfig:
    """Translate a LightningCLI config (a YAML mapping) into TrainConfig options.

    Args:
        data: The YAML's top-level mapping.
        source: The file, named by errors.

    Returns:
        The options, the key that set each one, and the checks left for after validation.

    Raises:
        ConfigError: The first unknown, refused or contradictory key (one line naming the file
            and the key; the others are listed after it).
    """
    prefix = ""
    if set(data) <= {"fit", "subcommand"} and isinstance(data.get("fit"), Mapping):  # LightningCLI's full form
        data, prefix = data["fit"], "fit."
    problems: list[tuple[int, str, str, str]] = []  # (order, key, message, hint)
    found: dict[str, list[tuple[int, int, str, Any]]] = {}  # option -> (priority, order, key, value or Refused)
    for order, (user, key, value) in enumerate(_leaves(data, prefix)):
        rule = _lookup(key)
        if rule is None:
            hint = did_you_mean(key.rsplit(".", 1)[-1], _siblings(key))
            if "." not in key:
                hint += " — this file is read as a LightningCLI config (trainer:, model.init_args: ...)"
            problems.append((order, user, f"unknown key {user!r}", hint))
            continue
        try:
            result = rule.apply(value)
        except Refused as refused:
            if not rule.option:
                problems.append((order, user, f"{user}: {refused.why}", refused.hint))
                continue
            result = refused
        if result is not SKIP and rule.option:
            found.setdefault(rule.option, []).append((rule.priority, order, user, result))
    config = LightningConfig(source)
    for option, entries in found.items():
        top = max(p for p, *_ in entries)
        winners = [(order, user, value) for p, order, user, value in entries if p == top]
        refusals = [(o, u, v) for o, u, v in winners if isinstance(v, Refused)]
        if refusals:
            order, user, why = refusals[0]
            problems.append((order, user, f"{user}: {why.why}", why.hint))
            continue
        values = {repr(v) for *_, v in winners}
        if len(values) > 1:
            (order, user, value), (_, other, second) = winners[:2]
            problems.append((order, user, f"{user} ({value!r}) and {other} ({second!r}) both set geoseg's "
                             f"{option.lstrip('_')}", "keep one"))
            continue
        _, user, value = winners[0]
        if option.startswith("_"):
            config.checks[option] = (value, user)
        else:
            config.options[option], config.keys[option] = value, user
    if problems:
        problems.sort()
        _, key, message, hint = problems[0]
        more = [p[1] for p in problems[1:]]
        if more:
            listed = ", ".join(more[:5]) + (", ..." if len(more) > 5 else "")
            hint = f"{hint}; {len(more)} more key{'s' if len(more) > 1 else ''} to change: {listed}"
        raise ConfigError(message, path=source, hint=hint)
    return config


def markdown_table() -> str:
    """The docs table of :data:`RULES`: LightningCLI key, what geoseg does with it, and why."""
    rows = ["| LightningCLI key | geoseg | translation, or why it is refused |", "|---|---|---|"]
    for rule in RULES:
        if rule.any_value:
            what = "accepted"
        elif rule.option is None:
            what = "**refused**" if rule.convert is None else "checked"
        elif rule.option.startswith("_"):
            what = "checked"
        else:
            what = f"`{rule.option}`"
        if rule.accept and rule.option is None:
            what += " except " + ", ".join(f"`{_yaml(a)}`" for a in rule.accept)
        rows.append(f"| `{rule.key}` | {what} | {rule.doc} |")
    return "\n".join(rows) + "\n"


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
