"""Bad options and pipelines are refused before any work; Ctrl-C stops cleanly (issue 12, §2 and §4).

* Every numeric or list option of every command is checked at the CLI boundary: exit code 2,
  one ``error:`` line naming the flag, no traceback, nothing written, inputs byte-identical,
  and (for the model commands) without importing torch — the refusal comes before any work.
* ``geoseg run`` refuses a pipeline whose parameters cannot work together before the first step
  runs, naming the file and the key, and without creating the run directory.
* Ctrl-C during ``geoseg tile`` exits 130 with one line, no traceback, and no surviving process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.reliability.conftest import REPO, assert_refused, assert_unchanged, scene_of, snapshot

HEAVY = ("torch", "lightning", "distributed")

# A fresh interpreter running ``geoseg ARGS`` that reports, at exit, which heavy modules it imported.
_PROBE = (
    "import sys, atexit\n"
    f"atexit.register(lambda: print('imported:', ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr))\n"
    "from geoseg.cli.main import main\n"
    "main(sys.argv[1:])\n"
)


def run_probe(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GEOSEG_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-c", _PROBE, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**env, "PYTHONPATH": str(REPO)})


# ------------------------------------------------------------------------------------ options
# (command, bad option arguments, flag the error line must name)
SCENE_OPTIONS = [
    (["--resolution", "0"], "--resolution"),
    (["--resolution", "-10"], "--resolution"),
    (["--resolution", "nan"], "--resolution"),
    (["--resolution", "ten"], "--resolution"),
    (["--offset", "nan"], "--offset"),
    (["--offset", "inf"], "--offset"),
    (["--offset", "1e9"], "--offset"),
    (["--invalid-scl", "a,b"], "--invalid-scl"),
    (["--invalid-scl", "3,12"], "--invalid-scl"),
    (["--invalid-scl", "-1"], "--invalid-scl"),
]
CASES = [
    *[("inspect", args, flag) for args, flag in SCENE_OPTIONS],
    *[("features", args, flag) for args, flag in SCENE_OPTIONS],
    ("features", ["--block", "0"], "--block"),
    ("features", ["--block", "-5"], "--block"),
    ("features", ["--block", "1.5"], "--block"),
    ("features", ["--workers", "0"], "--workers"),
    ("demo-data", ["--size", "0"], "--size"),
    ("demo-data", ["--size", "-120"], "--size"),
    ("demo-data", ["--size", "121"], "--size"),
    ("demo-data", ["--size", "20000"], "--size"),
    ("demo-data", ["--seed", "-1"], "--seed"),
    ("tile", ["--cube-size", "0"], "--cube-size"),
    ("tile", ["--cube-size", "-64"], "--cube-size"),
    ("tile", ["--overlap", "-1"], "--overlap"),
    ("tile", ["--cube-size", "64", "--overlap", "64"], "--overlap"),
    ("tile", ["--cube-size", "64", "--overlap", "100"], "--overlap"),
    ("tile", ["--min-valid", "1.5"], "--min-valid"),
    ("tile", ["--min-valid", "-0.1"], "--min-valid"),
    ("tile", ["--min-valid", "nan"], "--min-valid"),
    ("tile", ["--split", "0.5,0.2,0.2"], "--split"),
    ("tile", ["--split", "a,b,c"], "--split"),
    ("tile", ["--split", "0.5,0.5"], "--split"),
    ("tile", ["--split", "1.2,-0.1,-0.1"], "--split"),
    ("tile", ["--split", "nan,0.5,0.5"], "--split"),
    ("tile", ["--split-block", "0"], "--split-block"),
    ("tile", ["--seed", "-1"], "--seed"),
    ("tile", ["--workers", "0"], "--workers"),
    ("tile", ["--scheduler", "not an address"], "--scheduler"),
    ("cubes export", ["--split", "holdout"], "--split"),
    ("train", ["--epochs", "0"], "--epochs"),
    ("train", ["--batch-size", "0"], "--batch-size"),
    ("train", ["--lr", "0"], "--lr"),
    ("train", ["--lr", "-0.1"], "--lr"),
    ("train", ["--lr", "nan"], "--lr"),
    ("train", ["--weight-decay", "-1"], "--weight-decay"),
    ("train", ["--warmup-epochs", "-1"], "--warmup-epochs"),
    ("train", ["--focal-gamma", "inf"], "--focal-gamma"),
    ("train", ["--target-size", "4"], "--target-size"),
    ("train", ["--num-workers", "-1"], "--num-workers"),
    ("train", ["--patience", "-1"], "--patience"),
    ("train", ["--validate-every", "0"], "--validate-every"),
    ("train", ["--save-every", "0"], "--save-every"),
    ("train", ["--cat-channels", "0"], "--cat-channels"),
    ("train", ["--seed", "-1"], "--seed"),
    ("train", ["--devices", "0"], "--devices"),
    ("train", ["--devices", "two"], "--devices"),
    ("train", ["--num-nodes", "0"], "--num-nodes"),
    ("train", ["--downsample-size", "0"], "--downsample-size"),
    ("train", ["--limit-batches", "0"], "--limit-batches"),
    ("train", ["--max-time", "12h"], "--max-time"),
    ("train", ["--model-option", "encoder_depth"], "--model-option"),
    ("evaluate", ["--batch-size", "0"], "--batch-size"),
    ("evaluate", ["--save-examples", "-1"], "--save-examples"),
    ("evaluate", ["--num-workers", "-1"], "--num-workers"),
    ("evaluate", ["--device", "gpu0"], "--device"),
    ("predict", ["--window", "0"], "--window"),
    ("predict", ["--window", "-256"], "--window"),
    ("predict", ["--overlap", "-1"], "--overlap"),
    ("predict", ["--window", "64", "--overlap", "64"], "--overlap"),
    ("predict", ["--batch-size", "0"], "--batch-size"),
    ("predict", ["--workers", "0"], "--workers"),
    ("export", ["--opset", "12"], "--opset"),
    ("export", ["--opset", "21"], "--opset"),
    ("export", ["--tile-size", "0"], "--tile-size"),
    ("export", ["--overlap", "100"], "--overlap"),
    ("export", ["--overlap", "-1"], "--overlap"),
    ("export", ["--resolution", "0"], "--resolution"),
    ("export", ["--resolution", "nan"], "--resolution"),
    ("export", ["--batch", "0"], "--batch"),
]


def _command(name: str, demo: Path, tmp: Path) -> tuple[list[str | Path], Path, list[Path]]:
    """The command line of ``name`` on the demo copy: (arguments, the --out location, the inputs)."""
    scene = scene_of(demo)
    store, model = tmp / "store", tmp / "model"  # stand-ins: a refused option never opens them
    for folder in (store, model):
        folder.mkdir(exist_ok=True)
        (folder / "manifest.json").write_text("{}\n")
    catalog = tmp / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"schema_version": 1, "datasets": {"d": {
        "classes": [{"code": 1, "name": "water", "color": "#1f78b4"}],
        "scenes": [{"id": "s", "path": str(scene), "labels": {"raster": str(demo / "labels.tif")}}]}}}))
    out = {"features": tmp / "out.tif", "predict": tmp / "out.tif", "export": tmp / "out.onnx",
           "cubes export": tmp / "out.npy"}.get(name, tmp / "out")
    args: dict[str, list[str | Path]] = {
        "inspect": ["inspect", scene],
        "features": ["features", scene, "--out", out],
        "demo-data": ["demo-data", "--out", out],
        "tile": ["tile", "--catalog", catalog, "--dataset", "d", "--out", out],
        "cubes export": ["cubes", "export", store, "--out", out],
        "train": ["train", store, "--out", out],
        "evaluate": ["evaluate", model, store, "--out", out],
        "predict": ["predict", "--model", model, "--scene", scene, "--out", out],
        "export": ["export", model, "--out", out],
    }
    return args[name], out, [demo, store, model, catalog]


@pytest.mark.parametrize(("command", "bad", "flag"), CASES,
                         ids=[f"{c}-{' '.join(a)}" for c, a, _ in CASES])
def test_bad_option_is_refused_before_any_work(command, bad, flag, demo_copy, tmp_path):
    args, out, inputs = _command(command, demo_copy, tmp_path)
    before = snapshot(*inputs)
    listing = sorted(p.name for p in tmp_path.iterdir())
    result = run_probe(*args, *bad, cwd=tmp_path)
    line = assert_refused(result, flag)
    assert line.startswith(f"error: {flag}: ") or line.startswith("error: --model-option"), line
    assert not out.exists(), f"{out} written although {flag} was refused"
    assert sorted(p.name for p in tmp_path.iterdir()) == listing, "a file or temporary appeared"
    assert_unchanged(before, *inputs)
    imported = next(x for x in result.stderr.splitlines() if x.startswith("imported:"))
    assert imported == "imported: ", f"the refusal needed {imported}: it should come before any work"


def test_valid_options_still_parse(tmp_path):
    """The types accept what they should: defaults, an empty --invalid-scl, 0.7,0.15,0.15, device lists."""
    from click.testing import CliRunner

    from geoseg.cli.scene_cmds import inspect_cmd
    from geoseg.cli.types import Devices, Fractions, IntList

    assert IntList(0, 11).convert("", None, None) == ()
    assert IntList(0, 11).convert("0, 3,3,11", None, None) == (0, 3, 11)
    assert Fractions().convert("0.7,0.15,0.15", None, None) == (0.7, 0.15, 0.15)
    assert [Devices().convert(v, None, None) for v in ("auto", "2", "-1", "0,1")] == ["auto", "2", "-1", "0,1"]
    result = CliRunner().invoke(inspect_cmd, ["--help"])
    assert result.exit_code == 0 and "--resolution" in result.output and "x>0" in result.output


def test_help_and_usage_errors_keep_their_shape():
    """--help prints the help; a missing option or an unknown one is one line with exit code 2."""
    helped = subprocess.run([sys.executable, "-m", "geoseg", "tile", "--help"], capture_output=True, text=True, cwd=REPO)
    assert helped.returncode == 0 and "Usage: geoseg tile" in helped.stdout and "--cube-size" in helped.stdout
    missing = subprocess.run([sys.executable, "-m", "geoseg", "tile", "--out", "x"], capture_output=True, text=True,
                             cwd=REPO)
    assert_refused(missing, "--dataset")
    unknown = subprocess.run([sys.executable, "-m", "geoseg", "inspect", "x", "--resolutoin", "10"],
                             capture_output=True, text=True, cwd=REPO)
    assert_refused(unknown, "--resolutoin")


def test_python_api_refuses_bad_numbers(demo_copy, tmp_path):
    """open_scene and the feature writer raise ConfigError (a GeosegError), not ZeroDivisionError or NaN output."""
    from geoseg.errors import ConfigError
    from geoseg.features import write_feature_stack
    from geoseg.features.stack import feature_stack
    from geoseg.io import open_scene

    scene_dir = scene_of(demo_copy)
    for options in ({"resolution": 0}, {"resolution": -10.0}, {"offset": float("nan")}, {"invalid_scl": [12]}):
        with pytest.raises(ConfigError, match=next(iter(options))):
            open_scene(scene_dir, **options)
    scene = open_scene(scene_dir)
    for block in (0, -5):
        with pytest.raises(ConfigError, match="block"):
            feature_stack(scene, block=block)
        with pytest.raises(ConfigError, match="block"):
            write_feature_stack(scene, tmp_path / "s.tif", block=block, progress=False)
    assert not (tmp_path / "s.tif").exists()


# ---------------------------------------------------------------------------------- pipelines
def _set(data: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


# (key to break, value, what the error line names)
PIPELINE_CASES = [
    ("steps.predict.overlap", 300, "steps.predict.overlap"),  # window 256: found only after tile and train today
    ("steps.predict.window", 16, "steps.predict.overlap"),  # overlap 32 >= window 16
    ("steps.tile.overlap", 64, "steps.tile.overlap"),  # cube size 64
    ("steps.tile.split", [0.7, 0.2, 0.15], "steps.tile.split"),
    ("steps.tile.cube_size", 2048, "steps.tile.cube_size"),  # larger than the 960 px demo scene
    ("steps.tile.cube_size", 512, "steps.train.val_split"),  # one split block: no validation cubes
    ("steps.tile.seed", -1, "steps.tile.seed"),
    ("steps.train.target_size", 128, "steps.train.target_size"),  # larger than the 64 px cubes
    ("steps.train.lr", float("inf"), "steps.train.lr"),
    ("steps.predict.scenes", ["nosuch"], "steps.predict.scenes"),
]


@pytest.fixture(scope="module")
def cli_main():
    """geoseg's entry point, in this process: loading a pipeline imports torch once, not once per case."""
    from geoseg.cli.main import main

    return main


def _run_inprocess(main, args: list[str], capsys) -> subprocess.CompletedProcess:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, exited.value.code, captured.out, captured.err)


def _pipeline(tmp_path: Path, key: str | None = None, value=None) -> Path:
    data = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())
    data["catalog"] = str(REPO / "data_catalog.yaml")
    if key is not None:
        _set(data, key, value)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(("key", "value", "named"), PIPELINE_CASES, ids=[f"{k}={v}" for k, v, _ in PIPELINE_CASES])
def test_pipeline_refused_before_the_first_step(key, value, named, tmp_path, cli_main, capsys, monkeypatch):
    monkeypatch.setenv("GEOSEG_CACHE", str(tmp_path / "cache"))  # the check must not generate the demo scene
    pipeline = _pipeline(tmp_path, key, value)
    before = snapshot(pipeline)
    run_dir = tmp_path / "r"
    result = _run_inprocess(cli_main, ["run", str(pipeline), "--run-dir", str(run_dir), "--no-progress"], capsys)
    assert_refused(result, pipeline, named)
    assert not run_dir.exists(), "the run directory was created for a pipeline that cannot run"
    assert not (tmp_path / "cache").exists(), "the check generated or read scene data"
    assert_unchanged(before)


def test_pipeline_refusal_as_a_user_sees_it(tmp_path):
    """The same refusal through a fresh `geoseg run` process, and a bad --scheduler named as the flag."""
    pipeline = _pipeline(tmp_path, "steps.predict.overlap", 300)
    run_dir = tmp_path / "r"
    result = subprocess.run([sys.executable, "-m", "geoseg", "run", str(pipeline), "--run-dir", str(run_dir)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    line = assert_refused(result, pipeline, "steps.predict.overlap", "steps.predict.window")
    assert "this file" not in line
    assert not run_dir.exists()
    good = _pipeline(tmp_path)
    flagged = subprocess.run([sys.executable, "-m", "geoseg", "run", str(good), "--run-dir", str(run_dir),
                              "--scheduler", "nowhere"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    line = assert_refused(flagged, "--scheduler")
    assert str(good) not in line  # a flag's value is not blamed on the file
    assert not run_dir.exists()


# ------------------------------------------------------------------------------------ Ctrl-C
def _alive(pid: int) -> bool:
    """Running (not a zombie waiting for a parent that is gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_ctrl_c_during_tile_is_one_line_and_leaves_no_process(tmp_path):
    from geoseg.demo import generate_demo_scene

    demo = generate_demo_scene(tmp_path / "demo", size=480, seed=5, progress=False)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"schema_version": 1, "datasets": {"d": {
        "classes": [{"code": c, "name": f"class {c}", "color": "#000000"} for c in range(1, 7)],
        "scenes": [{"id": "s", "path": str(demo.scene), "labels": {"raster": str(demo.labels)}}]}}}))
    out = tmp_path / "cubes"
    done = out / "_staging" / "done"
    # 8 px cubes of a 480 px scene: 3600 cubes, far longer than the time it takes to notice progress
    proc = subprocess.Popen(
        [sys.executable, "-m", "geoseg", "tile", "--catalog", str(catalog), "--dataset", "d", "--out", str(out),
         "--cube-size", "8", "--overlap", "0", "--workers", "2", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while not (done.is_dir() and any(done.iterdir())):  # workers are writing cubes
            assert proc.poll() is None, f"tile ended before it was interrupted:\n{proc.stderr.read()}"
            assert time.monotonic() < deadline, "tiling never started"
            time.sleep(0.05)
        children = set(_group(proc.pid)) - {proc.pid}
        assert children, "no worker processes seen"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, f"exit code {proc.returncode}:\n{stderr}"
    both = stdout + stderr
    assert "Traceback" not in both and "KeyboardInterrupt" not in both, both
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), stderr
    assert "rerun" in lines[0]
    deadline = time.monotonic() + 30  # workers exit as the cluster closes; give a loaded machine time
    while (survivors := [pid for pid in children if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not survivors, f"worker processes survived Ctrl-C: {survivors}"
    assert not _group(proc.pid), "a process of the command's group survived"
