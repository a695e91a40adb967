"""A model that knows what it was trained on: the bundle's training domain and the check of a scene.

One tiny model is trained (one batch) on the demo store of tests/conftest.py; its bundle's
``config.json`` must carry the domain, and predict must compare scenes with it: a demo scene
of another seed fits, real Level-2A samples fit, their Level-1C twins and a copy whose DNs
lack the offset do not (a warning; with ``--strict`` one error line, exit code 2, nothing
written and every input byte-identical).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.bundle import load_bundle, read_bundle_config
from geoseg.bundle.domain import (
    FLOOR_SHIFT,
    SceneSample,
    TrainingDomain,
    check_domain,
    level_of,
    sample_scene,
    sample_windows,
)
from geoseg.errors import DomainError
from geoseg.io import open_scene
from geoseg.io.offsets import OffsetDecision
from geoseg.predict import PredictOptions, load_model_bundle, predict_scene
from geoseg.predict.predictor import check_scene_domain
from geoseg.tiling import CubeStore
from tests.conftest import shared
from tests.reliability.conftest import assert_refused, assert_unchanged, run_inproc, snapshot

TERRAMIND = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "637U_59R_1_3")  # 609U (all snow) left out


@pytest.fixture(scope="module")
def model_dir(demo_cubes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UNet trained for one batch on the demo store (a 336 px L2A-like demo scene)."""
    from geoseg.train import train
    from tests.train._helpers import tiny_config

    result = train(tiny_config(demo_cubes, tmp_path_factory.mktemp("domain") / "model", epochs=1, limit_batches=1))
    assert result.final is not None
    return result.final


@pytest.fixture(scope="module")
def like_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another demo scene (seed 7): the same kind of data as the training store."""
    from geoseg.demo import generate_demo_scene

    return generate_demo_scene(tmp_path_factory.mktemp("like") / "demo", size=240, seed=7, progress=False).scene


@pytest.fixture(scope="module")
def no_offset_copy(like_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``like_scene`` with +1000 on every valid DN, metadata unchanged: the offset is not applied."""
    out = tmp_path_factory.mktemp("offset") / "S2_NO_OFFSET"
    out.mkdir()
    for f in sorted(like_scene.iterdir()):
        if "_SCL_" in f.name or f.suffix != ".tif":
            shutil.copy(f, out / f.name)
            continue
        with rasterio.open(f) as src:
            profile, tags, dn = src.profile, src.tags(), src.read(1)
        dn = np.where(dn > 0, dn.astype(np.int32) + 1000, 0).astype(profile["dtype"])
        with rasterio.open(out / f.name, "w", **profile) as dst:
            dst.write(dn, 1)
            dst.update_tags(**tags)
    return out


def _check(model: Path, scene: Path | str):
    bundle = load_model_bundle(model)
    assert bundle.config.domain is not None
    opened = open_scene(scene)
    return check_domain(bundle.config.domain, opened, sample_scene(opened, bundle.config.recipe))


# ----------------------------------------------------------------------------- what training records
def test_training_records_the_domain_in_config_json(model_dir: Path, demo_cubes: Path) -> None:
    raw = json.loads((model_dir / "config.json").read_text())
    assert "domain" in raw
    domain = TrainingDomain.model_validate(raw["domain"])
    store = CubeStore.open(demo_cubes)
    assert domain.levels == ["L2A"] and domain.offset_rules == ["metadata"] and domain.scales == [10000.0]
    assert [s.scene_id for s in domain.scenes] == ["demo"] and domain.scenes[0].offset == -1000.0
    assert [c.name for c in domain.channels] == store.channel_names
    train = store.stats["by_split"]["train"]
    np.testing.assert_allclose([c.mean for c in domain.channels], train["mean"])
    np.testing.assert_allclose([c.std for c in domain.channels], train["std"])
    assert domain.pixels == train["count"] and 0 < domain.sample_pixels <= domain.pixels
    for c in domain.channels:
        assert c.p01 is not None and c.p50 is not None and c.p99 is not None
        assert c.p01 <= c.p50 <= c.p99
    b02 = domain.channel("B02")
    assert b02 is not None and b02.p01 is not None and 0.0 < b02.p01 < 0.05  # surface reflectance: a dark floor
    assert domain.valid_fraction is not None
    lo, hi = domain.valid_fraction
    assert store.manifest["min_valid"] <= lo <= hi <= 1.0
    assert read_bundle_config(model_dir).domain == domain


def test_the_store_manifest_records_level_and_offset_rule(demo_cubes: Path) -> None:
    source = CubeStore.open(demo_cubes).manifest["sources"][0]
    assert source["level"] == "L2A" and source["offset_rule"] == "metadata"
    assert "BOA_ADD_OFFSET" in source["offset_detail"]


def test_an_old_bundle_without_domain_loads_and_is_not_checked(model_dir: Path, like_scene: Path,
                                                               tmp_path: Path) -> None:
    old = tmp_path / "old_bundle"
    old.mkdir()
    raw = json.loads((model_dir / "config.json").read_text())
    del raw["domain"]
    (old / "config.json").write_text(json.dumps(raw))
    shutil.copy(model_dir / "model.safetensors", old / "model.safetensors")
    bundle = load_bundle(old)
    assert bundle.config.domain is None
    seen: list[str] = []
    scene = open_scene(like_scene)
    assert check_scene_domain(scene, bundle, PredictOptions(strict=True), seen.append) is None
    summary = predict_scene(scene, bundle, tmp_path / "lc.tif", strict=True, progress=False, warn=seen.append)
    assert seen == [] and summary.domain is None
    assert not any("domain" in line for line in summary.lines())
    with rasterio.open(tmp_path / "lc.tif") as ds:
        assert ds.tags()["domain_check"].startswith("not checked")


# ----------------------------------------------------------------------------- the check
def test_a_scene_like_the_training_data_fits(model_dir: Path, like_scene: Path) -> None:
    result = _check(model_dir, like_scene)
    assert result.findings == ()
    assert result.status() == "fits the model's training data"
    bands = result.figures["bands"]
    assert set(bands) == {"B02", "B03", "B04", "B08"}
    assert abs(bands["B02"]["p01"] - bands["B02"]["train_p01"]) < FLOOR_SHIFT
    assert result.figures["sample_valid_fraction"] > 0.5


def test_dn_without_their_offset_are_flagged(model_dir: Path, no_offset_copy: Path) -> None:
    result = _check(model_dir, no_offset_copy)
    assert [f.kind for f in result.findings] == ["reflectance"]
    message = result.findings[0].message
    assert message.startswith("S2_NO_OFFSET: ") and "B02" in message and "brighter" in message
    assert "check the scene's level, offset and scale" in message
    assert result.figures["bands"]["B02"]["p01"] - result.figures["bands"]["B02"]["train_p01"] > 0.08


@pytest.mark.parametrize("sample", TERRAMIND)
def test_real_l2a_fits_and_its_l1c_twin_is_flagged(model_dir: Path, sample: str) -> None:
    l2a = _check(model_dir, shared("terramind_examples", "S2L2A", f"{sample}.tif"))
    assert l2a.findings == (), l2a.messages  # a guessed offset confirmed by the sample is not a finding
    assert l2a.figures["scene_offset_rule"] == "inferred"
    l1c = _check(model_dir, shared("terramind_examples", "S2L1C", f"{sample}.tif"))
    kinds = [f.kind for f in l1c.findings]
    assert kinds == ["level"], l1c.messages  # one finding: the level, with the sample's evidence in it
    assert l1c.message == l1c.findings[0].message and l1c.message.startswith(f"{sample}: the scene is Level-1C")
    assert "trained on Level-2A" in l1c.message and "L2A product" in l1c.message
    assert "its reflectance shows it: its darkest B02 pixels" in l1c.message and "brighter" in l1c.message
    assert l1c.figures["bands"]["B02"]["p01"] - l1c.figures["bands"]["B02"]["train_p01"] > FLOOR_SHIFT


def _domain(**changes) -> TrainingDomain:
    from geoseg.bundle.domain import ChannelRange

    channels = [ChannelRange(name=b, mean=0.1, std=0.05, p01=0.02, p50=0.09, p99=0.3) for b in ("B02", "B03", "B04")]
    base = {"levels": ["L2A"], "scales": [10000.0], "offset_rules": ["metadata"], "channels": channels}
    return TrainingDomain(**{**base, **changes})


def _sample(values: np.ndarray, pixels: int | None = None) -> SceneSample:
    return SceneSample(("B02", "B03", "B04"), values, pixels or values.shape[1], 1, 0.0)


def test_the_rules_one_by_one(like_scene: Path) -> None:
    scene = open_scene(like_scene)
    rng = np.random.default_rng(0)
    fits = _sample(rng.uniform(0.025, 0.2, (3, 5000)))
    assert check_domain(_domain(), scene, fits).findings == ()
    # level: metadata alone decides; unknown levels are not compared
    assert [f.kind for f in check_domain(_domain(), replace(scene, level="L1C"), fits).findings] == ["level"]
    assert check_domain(_domain(), replace(scene, level="unknown"), fits).findings == ()
    assert check_domain(_domain(levels=["unknown"]), replace(scene, level="L1C"), fits).findings == ()
    assert check_domain(_domain(levels=["L1C", "L2A"]), replace(scene, level="L1C"), fits).findings == ()
    # reflectance: the dark floor, the median, the mean
    assert [f.kind for f in check_domain(_domain(), scene, _sample(fits.values + 0.05)).findings] == ["reflectance"]
    assert "darker" in check_domain(_domain(), scene, _sample(fits.values - 0.05)).messages[0]
    wide = _domain(channels=[c.model_copy(update={"p01": 0.0}) for c in _domain().channels])
    far_median = _sample(np.concatenate([np.full((3, 100), 0.01), np.full((3, 4900), 0.5)], axis=1))
    assert "median" in check_domain(wide, scene, far_median).messages[0]
    # a guessed offset / another scale: only when the sample does not confirm the reflectance
    guessed = replace(scene, offset=OffsetDecision(0.0, "inferred", "no metadata"), scale=1.0)
    assert check_domain(_domain(), guessed, fits).findings == ()
    few = _sample(fits.values[:, :50], pixels=10_000)
    result = check_domain(_domain(), guessed, few)
    assert [f.kind for f in result.findings] == ["offset", "scale"]
    assert "reflectance not compared" in result.figures["note"]
    assert all(m.startswith(f"{scene.scene_id}: ") and " — " in m for m in result.messages)
    one = result.message  # both on one line, the scene named once
    assert "\n" not in one and one.count(f"{scene.scene_id}: ") == 1 and "guessed" in one and "x 1 but" in one
    assert result.to_dict()["message"] == one and check_domain(_domain(), scene, fits).message == ""


def test_level_spellings() -> None:
    assert [level_of(t) for t in ("L2A", "Level-2A", "S2MSI1C", "L1C", None, "")] == [
        "L2A", "L2A", "L1C", "L1C", "unknown", "unknown"]


def test_the_sample_of_a_full_tile_is_a_few_small_windows() -> None:
    windows = sample_windows(10980, 10980)
    assert len(windows) == 9 and all(w.width == w.height == 170 for w in windows)
    assert all(w.row_off >= 0 and w.row_off + w.height <= 10980 for w in windows)
    assert sum(w.width * w.height for w in windows) / 10980**2 < 0.003
    assert len(sample_windows(240, 240)) == 1 and sample_windows(240, 240)[0].width == 240
    assert all(w.width == 3 for w in sample_windows(100_000, 3))


# ----------------------------------------------------------------------------- predict: warn, record, --strict
def test_predict_warns_and_records_the_findings(model_dir: Path, no_offset_copy: Path, tmp_path: Path) -> None:
    out, summary_json = tmp_path / "lc.tif", tmp_path / "run.json"
    result = run_inproc("predict", "-m", model_dir, "-s", no_offset_copy, "-o", out, "--no-progress",
                        "--summary-json", summary_json)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: S2_NO_OFFSET: the scene's reflectance")
    assert "  warning   S2_NO_OFFSET: " in result.stdout
    domain = json.loads(summary_json.read_text())[0]["domain"]
    assert [f["kind"] for f in domain["findings"]] == ["reflectance"] and domain["bands"]["B02"]["p01"] > 0.1
    with rasterio.open(out) as ds:
        assert ds.tags()["domain_check"].startswith("1 warning(s): reflectance")


def test_a_fitting_scene_prints_no_warning(model_dir: Path, like_scene: Path, tmp_path: Path) -> None:
    result = run_inproc("predict", "-m", model_dir, "-s", like_scene, "-o", tmp_path / "lc.tif", "--no-progress")
    assert result.returncode == 0 and "warning" not in result.stderr
    assert "  domain    fits the model's training data" in result.stdout


def test_an_l1c_scene_gets_one_warning_line(model_dir: Path, tmp_path: Path) -> None:
    scene = shared("terramind_examples", "S2L1C", "282D_485L_3_3.tif")
    result = run_inproc("predict", "-m", model_dir, "-s", scene, "-o", tmp_path / "lc.tif", "--no-progress")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "282D_485L_3_3: the scene is Level-1C" in warnings[0], result.stderr
    assert "its reflectance shows it" in warnings[0]
    assert [line for line in result.stdout.splitlines() if line.startswith("  warning ")] == \
        [f"  warning   {warnings[0].removeprefix('warning: ')}"]


@pytest.mark.parametrize("case", ["l1c", "no_offset"])
def test_strict_refuses_with_one_line_and_writes_nothing(case: str, model_dir: Path, no_offset_copy: Path,
                                                         tmp_path: Path) -> None:
    scene = (shared("terramind_examples", "S2L1C", "282D_485L_3_3.tif") if case == "l1c" else no_offset_copy)
    out = tmp_path / "maps"
    out.mkdir()
    (out / "notes.txt").write_text("my own file\n")
    before = snapshot(scene, model_dir, out)
    result = run_inproc("predict", "-m", model_dir, "-s", scene, "-o", out / "lc.tif", "--no-progress", "--strict",
                        "--confidence", out / "conf.tif", "--summary-json", out / "run.json")
    line = assert_refused(result, scene, "--strict")
    assert ("Level-1C" if case == "l1c" else "brighter than the training data's") in line
    assert "warning:" not in result.stderr
    assert_unchanged(before, scene, model_dir, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_strict_from_python_and_pipeline_options(model_dir: Path, no_offset_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(DomainError, match="refused by --strict: S2_NO_OFFSET: "):
        predict_scene(no_offset_copy, model_dir, tmp_path / "lc.tif", PredictOptions(strict=True, progress=False))
    assert list(tmp_path.iterdir()) == []
    assert PredictOptions.model_validate({"strict": True}).strict and not PredictOptions().strict
