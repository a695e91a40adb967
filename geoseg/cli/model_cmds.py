"""``geoseg models``: list the architectures, their default encoders, options and capabilities."""

from __future__ import annotations

import json

import click

__all__ = ["models_cmd"]


def _capabilities(capabilities: dict[str, object]) -> str:
    """The capabilities a model has, a list-valued one with its values: ``time_series (channels/attention)``."""
    return ", ".join(f"{k} ({'/'.join(map(str, v))})" if isinstance(v, list) else k
                     for k, v in capabilities.items() if v)


def _fmt(value: object) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return "None" if value is None else str(value)


@click.command("models")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--plain", is_flag=True, help="Plain text instead of rich tables.")
def models_cmd(name: str | None, as_json: bool, plain: bool) -> None:
    """List the segmentation models (or only NAME) with default encoders and options.

    Options are passed to ``create_model(NAME, ..., option=value)`` or under ``model:`` in
    a pipeline file; every model also takes ``encoder`` (any timm ``features_only`` model
    or a registered custom encoder) and ``aux_params``. The capability ``time_series`` lists
    the ``temporal`` modes in which a model takes a series of dates (N, T, C, H, W).
    """
    from geoseg.models import describe_models, get_model_class

    info = describe_models()
    if name is not None:
        get_model_class(name)  # raises ModelError with the closest name
        info = {name: info[name]}
    if as_json:
        click.echo(json.dumps(info, indent=2, default=list))
        return
    if plain:
        for model, d in info.items():
            caps = _capabilities(d["capabilities"])
            click.echo(f"{model}  (default encoder: {d['default_encoder']})  {d['summary']}")
            click.echo(f"  capabilities: {caps}")
            for o in d["options"]:
                click.echo(f"  {o['name']}: {o['type']} = {_fmt(o['default'])}  {o['help']}")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    overview = Table(title="geoseg models", show_lines=False)
    for col in ("model", "default encoder", "capabilities", "summary"):
        overview.add_column(col)
    for model, d in info.items():
        caps = _capabilities(d["capabilities"])
        overview.add_row(model, d["default_encoder"], caps, d["summary"])
    console.print(overview)
    for model, d in info.items():
        table = Table(title=f"{model} options")
        for col in ("option", "type", "default", "description"):
            table.add_column(col, overflow="fold")
        for o in d["options"]:
            table.add_row(o["name"], escape(o["type"]), escape(_fmt(o["default"])), escape(o["help"]))
        console.print(table)
