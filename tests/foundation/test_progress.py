"""Progress where output is a log (issue 16): tqdm bars on a terminal, plain lines everywhere else.

pytest's captured stderr (``capfd``) is no terminal, as in CI, ``geoseg run`` or a SLURM job:
there every stage must write a few plain lines (no carriage return) ending with one that
gives the total. The line logic is tested with a fake clock; tiling, prediction, training
and the dask callback on tiny inputs.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from geoseg.utils.progress import (
    DaskProgress,
    Progress,
    ProgressLines,
    format_duration,
    progress_bar,
    progress_mode,
    track_progress,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stderr_lines(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
                 monkeypatch: pytest.MonkeyPatch) -> pytest.CaptureFixture[str]:
    """Progress in its automatic mode, lines every 10 % (no interval), written to the captured stderr."""
    monkeypatch.delenv("GEOSEG_PROGRESS", raising=False)
    monkeypatch.setenv("GEOSEG_PROGRESS_INTERVAL", "0")
    caplog.set_level(logging.WARNING, logger="geoseg.progress")  # not logged at INFO: the lines go to stderr
    return capfd


def _plain(err: str, prefix: str) -> list[str]:
    """The lines of ``err`` starting with ``prefix``, after checking that nothing redraws a bar."""
    assert "\r" not in err and "\x1b[" not in err
    return [line for line in err.splitlines() if line.startswith(prefix)]


# --------------------------------------------------------------------------- the line logic
def test_lines_are_few_plain_and_end_with_the_total() -> None:
    clock, lines = FakeClock(), []
    with ProgressLines(10_000, "tiling", "cube", interval=10, clock=clock, write=lines.append) as bar:
        for _ in range(10_000):
            clock.now += 0.05  # 500 s in all: 10 s pass every 200 cubes, 10 % every 1 000
            bar.update()
    assert 9 <= len(lines) <= 11  # at most one line per 10 %, whatever the number of updates
    assert lines[0] == "tiling: 1000/10000 cubes (10 %), 50.0 s elapsed, ~7 min 30 s left"
    assert lines[-1] == "tiling: 10000/10000 cubes (100 %) in 8 min 20 s"
    assert not any("\r" in line or "\n" in line for line in lines)


def test_interval_limits_lines_of_slow_items_and_a_short_run_has_only_its_final_line() -> None:
    clock, lines = FakeClock(), []
    with ProgressLines(1000, "predict demo", "window", interval=250, clock=clock, write=lines.append) as bar:
        for _ in range(1000):
            clock.now += 1.0  # 1 000 s: 10 % every 100 s, but at most a line every 250 s
            bar.update()
    assert [line.split(", ")[1] for line in lines[:-1]] == [
        "4 min 10 s elapsed", "8 min 20 s elapsed", "12 min 30 s elapsed"]
    assert lines[-1] == "predict demo: 1000/1000 windows (100 %) in 16 min 40 s"
    short: list[str] = []
    with ProgressLines(1000, "inspect", "block", interval=10, clock=clock, write=short.append) as bar:
        for _ in range(1000):
            clock.now += 0.005  # 5 s in all: under the interval
            bar.update()
    assert short == ["inspect: 1000/1000 blocks (100 %) in 5.0 s"]


def test_unknown_total_and_a_stop_are_said() -> None:
    clock, lines = FakeClock(), []
    with pytest.raises(KeyboardInterrupt), ProgressLines(None, "features", "block", interval=1, clock=clock,
                                                         write=lines.append) as bar:
        for _ in range(3):
            clock.now += 2
            bar.update()
        raise KeyboardInterrupt
    assert lines == ["features: 1 block, 2.0 s elapsed", "features: 2 blocks, 4.0 s elapsed",
                     "features: 3 blocks, 6.0 s elapsed", "features: stopped at 3 blocks after 6.0 s"]
    stopped: list[str] = []
    with ProgressLines(81, "tiling", "cube", write=stopped.append, clock=clock) as bar:
        bar.update(40)
        bar.close(completed=False)
    assert stopped == ["tiling: stopped at 40/81 cubes (49 %) after 0.0 s"]


def test_durations() -> None:
    assert [format_duration(s) for s in (0.04, 12.34, 65, 3599.6, 7380)] == [
        "0.0 s", "12.3 s", "1 min 05 s", "1 h 00 min", "2 h 03 min"]


# --------------------------------------------------------------------------- choosing the mode
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_mode_is_a_bar_on_a_terminal_lines_elsewhere_and_forced_by_the_environment(
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GEOSEG_PROGRESS", raising=False)
    assert progress_mode() == "lines" and progress_mode(enabled=False) == "off"
    assert isinstance(track_progress(3, "x", "it"), ProgressLines)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert progress_mode() == "bar"
    with track_progress(3, "tiling", "cube") as bar:
        for _ in range(3):
            bar.update()
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()  # tqdm's bar, redrawn in place
    for forced in ("bar", "lines", "off"):
        monkeypatch.setenv("GEOSEG_PROGRESS", forced)
        assert progress_mode() == forced and progress_mode(enabled=False) == "off"
    assert type(track_progress(3, "x", "it")) is Progress  # off: shows nothing
    monkeypatch.setenv("GEOSEG_PROGRESS", "lines")
    with track_progress(3, "x", "it", enabled=False) as quiet:
        quiet.update(3)
    assert terminal.getvalue().count("3/3") == 1 and capfd.readouterr().err == ""


def test_lines_go_to_the_run_log_when_geoseg_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geoseg.pipeline.logs import run_log

    monkeypatch.setenv("GEOSEG_PROGRESS", "lines")
    with run_log(tmp_path / "run.log", echo=None):
        for _ in progress_bar(range(5), desc="tiling", unit="cube"):
            pass
    text = (tmp_path / "run.log").read_text()
    assert re.search(r"INFO +geoseg\.progress: tiling: 5/5 cubes \(100 %\) in \d", text), text


def test_iterables_and_dask_graphs_report_lines(stderr_lines: pytest.CaptureFixture[str]) -> None:
    import dask.array as da
    import numpy as np

    assert list(progress_bar(iter("abcd"), total=4, desc="demo scene", unit="block")) == list("abcd")
    blocks = da.ones((8, 8), chunks=(2, 8)).map_blocks(np.negative, name="geoseg-test-blocks")
    with DaskProgress("features", "geoseg-test-blocks"):
        assert float(blocks.compute(scheduler="threads").sum()) == -64
    lines = _plain(stderr_lines.readouterr().err, "")
    assert [line.split(",")[0] for line in lines[:3]] == [f"demo scene: {i}/4 blocks ({25 * i} %)" for i in (1, 2, 3)]
    assert re.fullmatch(r"demo scene: 4/4 blocks \(100 %\) in \d+\.\d s", lines[3])
    assert re.fullmatch(r"features: 4/4 blocks \(100 %\) in \d+\.\d s", lines[-1]), lines


# --------------------------------------------------------------------------- the stages on tiny inputs
@pytest.fixture(scope="module")
def trained(demo_cubes: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two tiny epochs trained with progress on, off a terminal, and what they wrote on stderr."""
    import torch

    from geoseg.train import train
    from tests.train._helpers import tiny_config

    monkeypatch, threads = pytest.MonkeyPatch(), torch.get_num_threads()
    monkeypatch.delenv("GEOSEG_PROGRESS", raising=False)
    monkeypatch.setenv("GEOSEG_PROGRESS_INTERVAL", "0")
    logger = logging.getLogger("geoseg.progress")
    level, err = logger.level, io.StringIO()
    logger.setLevel(logging.WARNING)  # not logged at INFO: the lines go to stderr
    monkeypatch.setattr("sys.stderr", err)  # no terminal
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("progress-train") / "model"
        result = train(tiny_config(demo_cubes, out, progress=True, epochs=2))
    finally:
        torch.set_num_threads(threads)
        logger.setLevel(level)
        monkeypatch.undo()
    return result, err.getvalue()


def test_training_off_a_terminal_logs_a_line_per_epoch(trained) -> None:
    result, err = trained
    lines = _plain(err, "")
    epochs = [line for line in lines if re.match(r"epoch \d/2: step", line)]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    steps = [int(step) for line in epochs for step in re.findall(r": step (\d+)", line)]
    assert steps[1] == 2 * steps[0] > 0
    for line in epochs:
        assert re.search(r", train_loss \d\.\d+, val_loss \d\.\d+, val_miou \d\.\d+; ", line), line
    assert "~" in epochs[0] and "left" not in epochs[1]  # time left after the first epoch, none after the last
    assert any(re.match(r"epoch 1/2: batch \d+/\d+ \(\d+ %\), step \d+, train_loss \d", line) for line in lines)
    assert re.fullmatch(rf"training: 2 epochs \(step {steps[1]}\) in \d+\.\d s", lines[-1]), lines[-1]
    assert result.epochs == 2 and (result.out / "final").is_dir()


def test_prediction_off_a_terminal_logs_lines(trained, demo_small, stderr_lines, tmp_path: Path) -> None:
    from geoseg.predict import predict_scene

    predict_scene(demo_small.scene, trained[0].out / "final", tmp_path / "lc.tif", window=64, batch_size=4)
    lines = _plain(stderr_lines.readouterr().err, "predict ")
    assert len(lines) >= 3 and re.fullmatch(r"predict \S+: (\d+)/\1 windows \(100 %\) in \d+\.\d s", lines[-1])
    assert re.fullmatch(r"predict \S+: \d+/\d+ windows \(\d+ %\), \d+\.\d s elapsed, ~\d+\.\d s left", lines[0])


def test_tiling_off_a_terminal_logs_lines(demo_small, stderr_lines, tmp_path: Path) -> None:
    from geoseg.tiling import tile_dataset
    from tests.tiling._tiling_helpers import write_catalog

    catalog = write_catalog(tmp_path / "catalog.yaml", demo_small.scene, {"raster": str(demo_small.labels)})
    summary = tile_dataset(catalog, "demo480", tmp_path / "store", workers=1, cube_size=48, overlap=0, group=1,
                           min_valid=0.1, split_block=1, seed=0)
    lines = _plain(stderr_lines.readouterr().err, "tiling: ")
    total = summary.candidates
    assert len(lines) >= 3 and lines[-1].startswith(f"tiling: {total}/{total} cubes (100 %) in ")
    assert re.fullmatch(rf"tiling: \d+/{total} cubes \(\d+ %\), \d+\.\d s elapsed, ~\d+\.\d s left", lines[0])
