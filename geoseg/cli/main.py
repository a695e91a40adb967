"""The ``geoseg`` command: a lazily loaded click group.

Each subcommand lives in its own module and is imported only when used, so
``geoseg inspect`` does not pay for importing torch. User errors (``GeosegError``)
print one line and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from geoseg import __version__
from geoseg.errors import GeosegError

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "inspect": "geoseg.cli.scene_cmds:inspect_cmd",
    "features": "geoseg.cli.scene_cmds:features_cmd",
    "demo-data": "geoseg.cli.scene_cmds:demo_data_cmd",
    "tile": "geoseg.cli.tile_cmds:tile_cmd",
    "cubes": "geoseg.cli.tile_cmds:cubes_group",
    "models": "geoseg.cli.model_cmds:models_cmd",
    "train": "geoseg.cli.train_cmds:train_cmd",
    "evaluate": "geoseg.cli.train_cmds:evaluate_cmd",
    "predict": "geoseg.cli.predict_cmds:predict_cmd",
    "export": "geoseg.cli.export_cmds:export_cmd",
    "run": "geoseg.cli.run_cmds:run_cmd",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                return None
            raise
        return getattr(module, attr)

    @staticmethod
    def _available(name: str) -> bool:
        return importlib.util.find_spec(COMMANDS[name].split(":")[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geoseg")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """geoseg: Sentinel-2 scenes to QGIS-ready land-cover maps."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("geoseg").setLevel(min(level, logging.INFO))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; maps user errors to exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cli.main(args=args, prog_name="geoseg", standalone_mode=False)
    except GeosegError as err:
        if "--debug" in args:
            raise
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
