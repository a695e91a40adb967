"""The shipped pipelines run: real_samples.yaml on the real samples; demo.yaml and demo_series.yaml reach the
demo quality (slow)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from geoseg.pipeline import run_pipeline
from tests.conftest import REPO, shared


def _shipped(name: str, tmp_path: Path, **train: object) -> Path:
    """pipelines/<name>.yaml copied to tmp_path (catalog made absolute), train options overridden."""
    data = yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text())
    data["catalog"] = str(REPO / "data_catalog.yaml")
    data["steps"]["train"].update(train)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _check_real_samples_run(run_dir: Path) -> None:
    from geoseg.config import load_catalog

    catalog = load_catalog(REPO / "data_catalog.yaml")
    dataset = catalog.dataset("terramind")
    predict = json.loads((run_dir / "predict" / "manifest.json").read_text())
    maps = [Path(m) for m in predict["outputs"]["maps"]]
    assert [m.stem for m in maps] == [s.id for s in dataset.scenes]
    epsg = set()
    for entry, path in zip(dataset.scenes, maps, strict=True):
        with rasterio.open(catalog.resolve(entry.path)) as src, rasterio.open(path) as out:
            assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
            epsg.add(out.crs.to_epsg())
            codes = set(out.read(1).ravel().tolist()) - {0}
        assert codes and codes <= {c.code for c in dataset.classes}
    assert len(epsg) == 5  # five UTM zones, each map on its own scene's grid
    store = json.loads((run_dir / "tile" / "cubes" / "manifest.json").read_text())
    assert store["complete"] and len(store["sources"]) == 5


def test_real_samples_tile_step_on_the_real_data(tmp_path: Path) -> None:
    """real_samples.yaml's tile step: five real scenes in five UTM zones into one CubeStore."""
    shared("terramind_examples")
    data = yaml.safe_load((REPO / "pipelines" / "real_samples.yaml").read_text())
    data["catalog"] = str(REPO / "data_catalog.yaml")
    data["steps"] = {"tile": {**data["steps"]["tile"], "workers": 1}}  # workers: where it runs, not what
    pipeline = tmp_path / "real_tile.yaml"
    pipeline.write_text(yaml.safe_dump(data))
    result = run_pipeline(pipeline, run_dir=tmp_path / "run", progress=False, echo=None)
    assert result.ran == ["tile"]
    store = json.loads((tmp_path / "run" / "tile" / "cubes" / "manifest.json").read_text())
    assert store["complete"] and [s["scene_id"] for s in store["sources"]] == [
        "282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"]
    assert len({s["grid"]["crs"] for s in store["sources"]}) == 5
    outputs = result.step("tile").outputs
    assert outputs["num_cubes"] == store["num_cubes"] > 40 and all(outputs["splits"].values())


@pytest.mark.slow  # a whole pipeline on the real samples (~9 s): .ci/run runs the slow tier after the default suite
def test_real_samples_pipeline_runs_on_the_real_data(tmp_path: Path) -> None:
    """real_samples.yaml with a tiny encoder and one epoch: every map on its own scene's grid (~3 min)."""
    shared("terramind_examples")
    pipeline = _shipped("real_samples", tmp_path, encoder="test_resnet", epochs=1, num_workers=0,
                        model_options={"decoder_channels": [32, 16, 16, 8, 8]})
    result = run_pipeline(pipeline, run_dir=tmp_path / "run", progress=False, echo=None)
    assert result.ran == ["tile", "train", "evaluate", "predict", "export"]
    _check_real_samples_run(tmp_path / "run")


@pytest.mark.slow
def test_real_samples_pipeline_as_shipped(tmp_path: Path) -> None:
    shared("terramind_examples")
    pipeline = _shipped("real_samples", tmp_path)
    run_pipeline(pipeline, run_dir=tmp_path / "run", progress=False, echo=None)
    _check_real_samples_run(tmp_path / "run")


def _quickstart_demo_args() -> list[str]:
    """The README's first Quickstart command, from ``geoseg`` on: ``["run", "pipelines/demo.yaml"]``."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- quickstart-demo -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    command = block.strip().split("&&")[-1].split()
    assert command[0].endswith("geoseg"), block
    return command[1:]


@pytest.mark.slow  # ~70 s of training: .ci/run runs it after the default suite
def test_demo_pipeline_reaches_the_demo_quality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The README's first command (`geoseg run pipelines/demo.yaml`) as written, in a copy of the repository
    layout with an empty cache (the demo scene is generated as on a fresh machine): val and test mIoU >= 0.80.
    Prints the wall time of every step (docs/pipelines.md: 33 s on an idle 2-core machine)."""
    from geoseg.cli.main import main

    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    shutil.copy(REPO / "data_catalog.yaml", tmp_path / "data_catalog.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEOSEG_CACHE", str(tmp_path / "cache"))
    args = _quickstart_demo_args()
    assert args == ["run", "pipelines/demo.yaml"]
    start = time.perf_counter()
    with pytest.raises(SystemExit) as done:
        main([*args, "--no-progress"])
    wall = time.perf_counter() - start
    out = capsys.readouterr().out
    assert (done.value.code or 0) == 0, out[-3000:]
    run_dir = tmp_path / "runs" / "demo"
    manifests = {s: json.loads((run_dir / s / "manifest.json").read_text())
                 for s in ("tile", "train", "evaluate", "predict", "export")}
    steps = ", ".join(f"{s} {m['seconds']:.0f} s" for s, m in manifests.items())
    train, evaluate = manifests["train"]["outputs"], manifests["evaluate"]["outputs"]
    report = (f"demo pipeline: {wall:.0f} s wall ({steps}; load average {os.getloadavg()[0]:.1f}); "
              f"val mIoU {train['best_score']:.3f} (epoch {train['best_epoch']}/{train['epochs']}), "
              f"test mIoU {evaluate['miou']:.3f}")
    with capsys.disabled():
        print(f"\n{report}")
    assert all(m["status"] == "complete" for m in manifests.values())
    assert train["monitor"] == "val_miou" and train["best_score"] >= 0.80, report
    assert evaluate["miou"] >= 0.80, report
    with rasterio.open(run_dir / "predict" / "maps" / "demo.tif") as ds:
        assert ds.count == 1 and ds.nodata == 0 and ds.shape == (960, 960)
        assert set(np.unique(ds.read(1))) == {0, 1, 2, 3, 4, 5, 6}
    assert (run_dir / "export" / "model.onnx").is_file()
    assert f"qgis {run_dir / 'predict' / 'maps' / 'demo.tif'}" in out
    _check_engines_give_torchs_map(run_dir, tmp_path / "engines")


def _check_engines_give_torchs_map(run_dir: Path, out: Path) -> None:
    """Every engine's map of the trained demo model equals float32 torch's on >= 99.9 % of the valid pixels,
    on the demo scene and on a real sample (issue 17); auto runs bfloat16 where the CPU computes it natively."""
    from geoseg.bundle.engines import cpu_has_native_bf16
    from geoseg.config import dataset_scenes, load_catalog
    from geoseg.errors import ModelError
    from geoseg.predict import predict_scene

    model = run_dir / "train" / "model"
    demo = dataset_scenes(load_catalog(Path("data_catalog.yaml")), "demo")[0].scene
    real = shared("terramind_examples", "S2L2A", "282D_485L_3_3.tif")
    out.mkdir()
    for name, scene in (("demo", demo), ("real", real)):
        maps = {}
        for engine in ("torch", "auto", "torch-bf16", "onnxruntime"):
            path = out / f"{name}-{engine}.tif"
            try:
                summary = predict_scene(scene, model, path, engine=engine, device="cpu", progress=False, window=256)
            except ModelError as err:  # only bfloat16 may refuse, and only below the promised agreement
                assert engine == "torch-bf16" and "below 0.999" in str(err), err
                continue
            if name == "demo" and engine == "auto" and cpu_has_native_bf16():
                assert summary.engine == "torch-bf16", summary.engine_reason
            with rasterio.open(path) as ds:
                maps[engine] = ds.read(1)
        valid = maps["torch"] != 0
        for engine, labels in maps.items():
            assert np.array_equal(labels != 0, valid)
            agreement = float((labels[valid] == maps["torch"][valid]).mean())
            assert agreement >= 0.999, (name, engine, agreement)


@pytest.mark.slow  # minutes of training on 2 CPU cores: .ci/run runs it after the default suite
def test_demo_series_pipeline_maps_the_season(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`geoseg run pipelines/demo_series.yaml` from an empty cache (the season is generated on first use):
    every step completes, the test scores tell cropland from grassland, and the series gives one QGIS-styled
    map on the season's grid."""
    monkeypatch.setenv("GEOSEG_CACHE", str(tmp_path / "cache"))
    start = time.perf_counter()
    result = run_pipeline(_shipped("demo_series", tmp_path), run_dir=tmp_path / "run", progress=False)
    wall = time.perf_counter() - start
    assert result.ran == ["tile", "train", "evaluate", "predict", "export"]
    metrics = json.loads((tmp_path / "run" / "evaluate" / "report" / "metrics.json").read_text())
    iou = {name: c["iou"] for name, c in metrics["per_class"].items()}
    report = (f"demo_series pipeline: {wall:.0f} s wall (load average {os.getloadavg()[0]:.1f}); test mIoU "
              f"{metrics['miou']:.3f}; cropland {iou['cropland']:.3f}, grassland {iou['grassland']:.3f}")
    with capsys.disabled():
        print(f"\n{report}")
    assert metrics["miou"] >= 0.6 and min(iou["cropland"], iou["grassland"]) >= 0.5, report
    maps = tmp_path / "run" / "predict" / "maps"
    labels = tmp_path / "cache" / "demo_480_0_6dates" / "labels.tif"
    with rasterio.open(maps / "demo_series.tif") as ds, rasterio.open(labels) as truth:
        assert (ds.crs, ds.transform, ds.shape) == (truth.crs, truth.transform, truth.shape)
        assert set(np.unique(ds.read(1))) <= {0, 1, 2, 3, 4, 5, 6} and ds.nodata == 0
    assert (maps / "demo_series.qml").is_file() and (tmp_path / "run" / "export" / "model.onnx").is_file()
