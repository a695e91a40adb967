"""``geoseg run``: the tiny pipeline end to end, skipping, --force, parameter changes, resume, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from geoseg.pipeline import run_pipeline
from tests.pipeline._pipeline_helpers import DEMO_SIZE, tiny_pipeline, write_catalog, write_pipeline

STEPS = ["tile", "train", "evaluate", "predict", "export"]


def _manifest(run_dir: Path, step: str) -> dict:
    return json.loads((run_dir / step / "manifest.json").read_text())


def _run_ids(run_dir: Path) -> dict[str, str]:
    return {s: _manifest(run_dir, s)["run_id"] for s in STEPS}


def _copy_run(run_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shared run (and its pipeline file) that a test may change."""
    pipeline_file = run_dir.parents[1] / "tiny.yaml"
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(run_dir, copy)
    return copy, pipeline_file


def _main(args: list[str]) -> int:
    from geoseg.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return int(exit_info.value.code or 0)


def test_every_step_writes_its_outputs_config_and_manifest(tiny_run: Path) -> None:
    from geoseg import __version__
    from geoseg.config import dataset_scenes, load_catalog
    from geoseg.features import read_features

    for step in STEPS:
        m = _manifest(tiny_run, step)
        assert m["status"] == "complete" and m["geoseg_version"] == __version__
        assert len(m["key"]) == 64 and m["params"] and m["inputs"] and m["run_id"]
        assert (tiny_run / step / "config.yaml").is_file()
    # tile: a complete CubeStore; its resolved config names the store and the parameters
    store = tiny_run / "tile" / "cubes"
    store_manifest = json.loads((store / "manifest.json").read_text())
    assert store_manifest["complete"] and store_manifest["cube_size"] == 64
    tile = _manifest(tiny_run, "tile")
    assert tile["outputs"]["num_cubes"] == store_manifest["num_cubes"] == sum(tile["outputs"]["splits"].values()) > 20
    assert yaml.safe_load((tiny_run / "tile" / "config.yaml").read_text())["out"] == str(store)
    # train: MODEL_DIR with best/final bundles; its config is the trainer's, pointing at the store
    train_cfg = yaml.safe_load((tiny_run / "train" / "config.yaml").read_text())
    assert train_cfg["cubes"] == str(store) and train_cfg["encoder"] == "test_resnet" and train_cfg["epochs"] == 2
    assert (tiny_run / "train" / "model" / "best" / "model.safetensors").is_file()
    assert _manifest(tiny_run, "train")["outputs"]["epochs"] == 2
    # evaluate: the metrics file agrees with the manifest
    metrics = json.loads((tiny_run / "evaluate" / "report" / "metrics.json").read_text())
    assert metrics["split"] == "test" and 0.0 <= metrics["miou"] <= 1.0
    assert _manifest(tiny_run, "evaluate")["outputs"]["miou"] == pytest.approx(metrics["miou"])
    # predict: the map is on the scene's exact grid, class codes of the catalog, 0 exactly where input is invalid
    catalog = load_catalog(tiny_run.parents[1] / "catalog.yaml")
    scene = dataset_scenes(catalog, "demo")[0].scene
    tif = tiny_run / "predict" / "maps" / "demo.tif"
    with rasterio.open(tif) as ds:
        classes = ds.read(1)
        assert (ds.crs, ds.transform, ds.shape) == (scene.grid.crs, scene.grid.affine, (DEMO_SIZE, DEMO_SIZE))
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0
    from rasterio.windows import Window

    _, valid = read_features(scene, Window(0, 0, DEMO_SIZE, DEMO_SIZE))
    assert np.array_equal(classes == 0, ~valid)
    assert set(np.unique(classes[valid])) <= {1, 2, 3, 4, 5, 6}
    for sidecar in ("demo.tif.aux.xml", "demo.qml", "demo_confidence.tif"):
        assert (tiny_run / "predict" / "maps" / sidecar).is_file()
    # export: the ONNX model with Deepness metadata
    from geoseg.export import read_metadata

    meta = read_metadata(tiny_run / "export" / "model.onnx")
    assert meta["class_names"]["0"] == "water" and meta["tile_size"] == meta["tiles_size"] == 64
    # the run log holds every step's report and the QGIS hint; pipeline.yaml is the resolved pipeline
    log = (tiny_run / "run.log").read_text()
    assert all(f"[{s}] done" in log for s in STEPS) and "Open the land-cover map in QGIS" in log
    resolved = yaml.safe_load((tiny_run / "pipeline.yaml").read_text())
    assert resolved["name"] == "tiny" and Path(resolved["catalog"]).is_absolute()


def test_second_run_skips_every_step(tiny_run: Path) -> None:
    before = _run_ids(tiny_run)
    mtime = (tiny_run / "predict" / "maps" / "demo.tif").stat().st_mtime_ns
    lines: list[str] = []
    result = run_pipeline(tiny_run.parents[1] / "tiny.yaml", run_dir=tiny_run, progress=False, echo=lines.append)
    assert result.skipped == STEPS and result.ran == []
    assert _run_ids(tiny_run) == before
    assert (tiny_run / "predict" / "maps" / "demo.tif").stat().st_mtime_ns == mtime
    assert sum("up to date, skipped" in line for line in lines) == 5
    assert any(line.strip().startswith("qgis ") and line.endswith("demo.tif") for line in lines)


def test_force_train_reruns_train_evaluate_predict_not_tile(tiny_run: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, pipeline = _copy_run(tiny_run, tmp_path)
    before = _run_ids(run_dir)
    code = _main(["run", str(pipeline), "--run-dir", str(run_dir), "--force", "train", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    after = _run_ids(run_dir)
    assert after["tile"] == before["tile"]
    assert all(after[s] != before[s] for s in ("train", "evaluate", "predict", "export"))
    assert "[tile] up to date, skipped" in out and "[train] running (forced)" in out
    assert "[evaluate] running (forced)" in out and "[predict] running (forced)" in out


def test_parameter_changes_rerun_only_what_they_affect(tiny_run: Path, tmp_path: Path) -> None:
    run_dir, _ = _copy_run(tiny_run, tmp_path)
    catalog = tiny_run.parents[1] / "catalog.yaml"
    before = _run_ids(run_dir)
    # an execution-only option (batch size of prediction) changes nothing
    same = write_pipeline(tmp_path / "same.yaml", tiny_pipeline(catalog, predict={"batch_size": 2}))
    assert run_pipeline(same, run_dir=run_dir, progress=False, echo=None).ran == []
    # a content option of evaluate reruns evaluate alone
    changed = write_pipeline(tmp_path / "changed.yaml", tiny_pipeline(catalog, evaluate={"save_examples": 2}))
    result = run_pipeline(changed, run_dir=run_dir, progress=False, echo=None)
    assert result.ran == ["evaluate"]
    assert len(list((run_dir / "evaluate" / "report" / "examples").glob("*.png"))) == 2
    assert {s: v for s, v in _run_ids(run_dir).items() if s != "evaluate"} == {
        s: v for s, v in before.items() if s != "evaluate"}


def test_interrupted_prediction_resumes_with_the_unfinished_scenes(tiny_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import geoseg.predict

    run_dir, _ = _copy_run(tiny_run, tmp_path)
    catalog = write_catalog(tmp_path / "catalog.yaml", {"demo": [("demo", 3)], "two": [("demo", 3), ("other", 5)]})
    # same definition of 'demo' → tile/train stay valid; predict now covers the two scenes of 'two'
    pipeline = write_pipeline(tmp_path / "two.yaml", tiny_pipeline(catalog, predict={"dataset": "two"}))
    real = geoseg.predict.predict_scene
    calls: list[str] = []

    def crash_on_other(scene, *args, **kwargs):
        calls.append(scene.scene_id)
        if scene.scene_id == "other":
            raise RuntimeError("power cut")  # the machine died during the second scene
        return real(scene, *args, **kwargs)

    monkeypatch.setattr(geoseg.predict, "predict_scene", crash_on_other)
    with pytest.raises(RuntimeError, match="power cut"):
        run_pipeline(pipeline, run_dir=run_dir, progress=False, echo=None)
    failed = _manifest(run_dir, "predict")
    assert failed["status"] == "failed" and list(failed["progress"]["done"]) == ["demo"]
    calls.clear()
    monkeypatch.setattr(geoseg.predict, "predict_scene", lambda scene, *a, **k: calls.append(scene.scene_id)
                        or real(scene, *a, **k))
    result = run_pipeline(pipeline, run_dir=run_dir, progress=False, echo=None)
    assert result.ran == ["predict"] and calls == ["other"]  # the finished scene is not redone
    done = _manifest(run_dir, "predict")
    assert done["status"] == "complete" and [Path(m).name for m in done["outputs"]["maps"]] == ["demo.tif", "other.tif"]
    with rasterio.open(run_dir / "predict" / "maps" / "other.tif") as ds:
        assert ds.shape == (DEMO_SIZE, DEMO_SIZE) and ds.read(1).max() > 0


def test_train_resumes_from_its_checkpoint_after_a_crash(tiny_run: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import geoseg.train

    run_dir, pipeline = _copy_run(tiny_run, tmp_path)
    manifest = _manifest(run_dir, "train")
    manifest.update(status="failed")  # as left by a crash in epoch 2
    (run_dir / "train" / "manifest.json").write_text(json.dumps(manifest))
    seen = []

    def fake_train(config):
        seen.append(config)
        raise RuntimeError("power cut")

    monkeypatch.setattr(geoseg.train, "train", fake_train)
    with pytest.raises(RuntimeError, match="power cut"):
        run_pipeline(pipeline, run_dir=run_dir, progress=False, echo=None)
    assert seen[-1].resume is True and seen[-1].overwrite is False
    with pytest.raises(RuntimeError, match="power cut"):  # --force starts again from scratch
        run_pipeline(pipeline, run_dir=run_dir, force=["train"], progress=False, echo=None)
    assert seen[-1].resume is False and seen[-1].overwrite is True


@pytest.mark.parametrize(("text", "key", "closest"), [
    ("steps:\n  tile: {cube_sise: 64}\n", "steps.tile.cube_sise", "cube_size"),
    ("step:\n  tile: {}\n", "step", "steps"),
    ("steps:\n  train: {encodr: resnet18}\n  tile: {}\n", "steps.train.encodr", "encoder"),
])
def test_unknown_key_is_a_one_line_error_with_exit_code_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], text: str, key: str,
                                                          closest: str) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: demo\n" + text)
    assert _main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(bad) in err and repr(key) in err and f"did you mean {closest!r}" in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_bad_references_fail_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    catalog = write_catalog(tmp_path / "catalog.yaml")
    cases = {
        "dataset": (tiny_pipeline(catalog) | {"dataset": "dem"}, "did you mean 'demo'"),
        "model": (tiny_pipeline(catalog, train={"model": "unet3pluss"}), "did you mean 'unet3plus'"),
        "encoder": (tiny_pipeline(catalog, train={"encoder": "resnet188"}), "unknown encoder 'resnet188'"),
        "option": (tiny_pipeline(catalog, train={"model_options": {"decoder_chanels": [8]}}), "decoder_channels"),
        "dependency": (tiny_pipeline(catalog, steps=("tile", "evaluate")), "needs step(s) train"),
        "force": (tiny_pipeline(catalog, steps=("tile",)), "this pipeline has no train step"),
    }
    for name, (data, message) in cases.items():
        path = write_pipeline(tmp_path / f"{name}.yaml", data)
        args = ["run", str(path)] + (["--force", "train"] if name == "force" else [])
        assert _main(args) == 2, name
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (name, err)
    assert not (tmp_path / "runs").exists()


def test_missing_data_is_reported_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    catalog = write_catalog(tmp_path / "catalog.yaml")
    data = yaml.safe_load(catalog.read_text())
    data["datasets"]["demo"]["requires"] = "shared/data/not_here"
    catalog.write_text(yaml.safe_dump(data))
    path = write_pipeline(tmp_path / "p.yaml", tiny_pipeline(catalog))
    assert _main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs shared/data/not_here, which is not there" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_training_process_of_another_rank_only_joins_the_training(tiny_run: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning re-launches `geoseg run` for ranks > 0: those processes train with rank 0's decision, nothing else."""
    import geoseg.train

    run_dir, pipeline = _copy_run(tiny_run, tmp_path)
    manifest = _manifest(run_dir, "train")
    # rank 0 is training (a resumed attempt): its running manifest carries its decision
    manifest.update(status="running", progress={"resume": True})
    (run_dir / "train" / "manifest.json").write_text(json.dumps(manifest))
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    seen = []
    monkeypatch.setattr(geoseg.train, "train", lambda config: seen.append(config))
    monkeypatch.setenv("LOCAL_RANK", "1")
    result = run_pipeline(pipeline, run_dir=run_dir, progress=False, echo=None)
    assert result.steps == []  # no step of its own
    assert len(seen) == 1 and seen[0].resume is True and seen[0].overwrite is False
    assert seen[0].cubes == run_dir / "tile" / "cubes" and seen[0].out == run_dir / "train" / "model"
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before  # wrote nothing
