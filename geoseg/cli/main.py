"""The ``geoseg`` command: a lazily loaded click group.

Each subcommand lives in its own module and is imported only when used, so
``geoseg inspect`` does not pay for importing torch. User errors (``GeosegError``)
print one line and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click
from typing_extensions import override

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
    "search": "geoseg.cli.search_cmds:search_cmd",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    @override
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    @override
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


def _flag(param: click.Parameter) -> str:
    """How the user names ``param``: its first long flag (``--resolution``), or an argument's name (``SCENE``)."""
    if isinstance(param, click.Option):
        longs = [o for o in param.opts if o.startswith("--")]
        return (longs or param.opts)[0]
    return param.human_readable_name


def _command_path(args: list[str]) -> str:
    words = [a for a in args if not a.startswith("-")][:2]
    if words and words[0] == "cubes":
        return " ".join(words)
    return words[0] if words else ""


def usage_line(err: click.UsageError, args: list[str]) -> str:
    """A click usage error as one line naming the flag: ``--resolution: 0 is not > 0 — <fix>``."""
    if isinstance(err, click.BadParameter) and not isinstance(err, click.MissingParameter):
        if err.param_hint is not None:
            hints = [err.param_hint] if isinstance(err.param_hint, str) else list(err.param_hint)
            name = " / ".join(hints)
        else:
            name = _flag(err.param) if err.param is not None else ""
        text = f"{name}: {err.message}" if name else err.message
    else:
        text = err.format_message()
        if isinstance(err, click.MissingParameter | click.NoSuchOption) or "--help" not in text:
            command = (err.ctx.command_path if err.ctx is not None else f"geoseg {_command_path(args)}".strip())
            text = f"{text.rstrip('.')} — see '{command} --help'"
    return " ".join(text.split())  # one line, always


_RESUME = {"tile": "rerun the same command to resume", "run": "rerun the same command to resume",
           "train": "rerun with --auto-resume to continue from the last checkpoint (--overwrite starts again)"}


def _interrupted(args: list[str]) -> str:
    """The one line printed on Ctrl-C (exit code 130)."""
    command = _command_path(args).split(" ")[0]
    return f"interrupted — {_RESUME.get(command, 'rerun the same command')}"


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
        click.echo(_interrupted(args), err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as err:
        err.show()  # ``geoseg`` alone: the help text
        sys.exit(err.exit_code)
    except click.UsageError as err:
        click.echo(f"error: {usage_line(err, args)}", err=True)
        sys.exit(2)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
