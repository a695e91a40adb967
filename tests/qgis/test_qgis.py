"""A real headless QGIS (Debian's) opens every output styled: map, confidence, polygons, features.

The map and confidence come from the tiny pipeline (tile → train → predict on a small demo
scene, shared with tests/pipeline); the class polygons and the feature stack are written from
the same model and scene. Each must open with its renderer (paletted map, viridis confidence,
categorized polygons from the GeoPackage's ``layer_styles``, natural-colour features) and draw
the colours that renderer promises. ``render_docs.py`` (the README's pictures) is run too.
QGIS runs in a subprocess with Debian's ``/usr/bin/python3`` and a
clean environment. QGIS is installed by ``install_qgis.sh`` (the one install recipe, also run
by ``.ci/run``) when missing and we are root; the test skips only when QGIS is absent, we are
not root and ``CI`` is unset (with ``CI`` set, as ``.ci/run`` sets it, it fails).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.pipeline._pipeline_helpers import shared_tiny_run

pytestmark = pytest.mark.qgis

PYTHON = "/usr/bin/python3"
QGIS_PROCESS = "/usr/bin/qgis_process.bin"
PROBE = Path(__file__).with_name("qgis_probe.py")
RENDER_DOCS = Path(__file__).with_name("render_docs.py")
EXTRAS = ("confidence", "stack", "polygons")
INSTALL = Path(__file__).with_name("install_qgis.sh")  # also what .ci/run calls


def _script(*args: str, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def qgis() -> None:
    """Debian's QGIS, installed if needed (see the module docstring for when this skips)."""
    if _script("--check").returncode == 0:
        return
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"QGIS is required in CI but is not installed (and we are not root): bash {INSTALL}")
        pytest.skip(f"QGIS is not installed and installing it needs root: sudo bash {INSTALL}")
    done = _script()
    if done.returncode != 0 or _script("--check").returncode != 0:
        pytest.fail(f"installing QGIS with {INSTALL} failed (exit code {done.returncode}):\n"
                    f"{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _clean_env(tmp: Path) -> dict[str, str]:
    (tmp / "xdg").mkdir(mode=0o700, exist_ok=True)
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "LANG": "C.UTF-8", "QT_QPA_PLATFORM": "offscreen",
            "QGIS_CUSTOM_CONFIG_PATH": str(tmp / "qgis-profile"), "XDG_RUNTIME_DIR": str(tmp / "xdg")}


@pytest.fixture(scope="module")
def landcover(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The pipeline's map copied twice: with only ``.tif.aux.xml``, and with ``.qml`` too."""
    run_dir = shared_tiny_run(tmp_path_factory)
    maps = run_dir / "predict" / "maps"
    root = tmp_path_factory.mktemp("qgis-maps")
    out = {}
    for variant, names in {"aux": ("demo.tif", "demo.tif.aux.xml"),
                           "qml": ("demo.tif", "demo.tif.aux.xml", "demo.qml")}.items():
        (root / variant).mkdir()
        for name in names:
            shutil.copy(maps / name, root / variant / name)
        out[variant] = root / variant / "demo.tif"
    from geoseg.config import load_catalog

    out["classes"] = load_catalog(run_dir.parents[1] / "catalog.yaml").dataset("demo").classes
    with rasterio.open(out["aux"]) as ds:
        out["pixels"], out["epsg"] = ds.read(1), ds.crs.to_epsg()
    return out


@pytest.fixture(scope="module")
def extras(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny run's model on its scene: map + confidence + polygons, and the scene's feature stack."""
    from geoseg.config import dataset_scenes, load_catalog
    from geoseg.features import write_feature_stack
    from geoseg.predict import predict_scene

    run_dir = shared_tiny_run(tmp_path_factory)
    scene = dataset_scenes(load_catalog(run_dir.parents[1] / "catalog.yaml"), "demo")[0].scene
    out = tmp_path_factory.mktemp("qgis-extras")
    predict_scene(scene, run_dir / "train" / "model" / "best", out / "landcover.tif", confidence=out / "confidence.tif",
                  vector=out / "classes.gpkg", progress=False)
    write_feature_stack(scene, out / "stack.tif", progress=False)
    with rasterio.open(out / "confidence.tif") as ds:
        confidence = ds.read(1)
    with rasterio.open(out / "stack.tif") as ds:
        names = list(ds.descriptions)
        rgb = ds.read([names.index(b) + 1 for b in ("B04", "B03", "B02")])
        valid = ds.dataset_mask() > 0
    with rasterio.open(out / "landcover.tif") as ds:
        classes = ds.read(1)
    return {"landcover": out / "landcover.tif", "confidence": out / "confidence.tif", "stack": out / "stack.tif",
            "polygons": out / "classes.gpkg", "confidence_values": confidence, "rgb": rgb, "valid": valid,
            "channel_names": names, "classes_raster": classes}


@pytest.fixture(scope="module")
def seen(qgis, landcover: dict, extras: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What QGIS reports for both map variants and the other outputs (one QGIS process)."""
    tmp = tmp_path_factory.mktemp("qgis-run")
    report = tmp / "report.json"
    layers = {"aux": landcover["aux"], "qml": landcover["qml"], **{name: extras[name] for name in EXTRAS}}
    args = [PYTHON, "-I", str(PROBE), str(report)]
    for name, path in layers.items():
        args += [str(path), str(tmp / f"{name}.png")]
    done = subprocess.run(args, env=_clean_env(tmp), capture_output=True, text=True, timeout=600, cwd=tmp)
    assert done.returncode == 0 and report.is_file(), done.stderr[-3000:]
    data = json.loads(report.read_text())
    return {"version": data["qgis_version"], "png": {name: tmp / f"{name}.png" for name in layers},
            "stderr": done.stderr, **{name: data["layers"][str(path)] for name, path in layers.items()}}


def _image(png: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGBA")).astype(int)


@pytest.mark.parametrize("variant", ["aux", "qml"])
def test_qgis_opens_a_valid_layer_with_crs_and_nodata(seen: dict, landcover: dict, variant: str) -> None:
    layer = seen[variant]
    assert layer["valid"]
    assert layer["crs"] == f"EPSG:{landcover['epsg']}"
    assert (layer["width"], layer["height"]) == landcover["pixels"].shape[::-1]
    assert layer["has_nodata"] and layer["nodata"] == 0
    assert layer["renderer"] == "paletted" and layer["renderer_class"] == "QgsPalettedRasterRenderer"


def test_class_names_and_colours_from_the_aux_xml_alone(seen: dict, landcover: dict) -> None:
    """Without the .qml, QGIS takes labels from the PAM category names and colours from the palette."""
    by_value = {value: (label, color) for value, label, color in seen["aux"]["settings"]["classes"]}
    for c in landcover["classes"]:
        assert by_value[c.code] == (c.name, c.color), c
    legend = {label: color for label, color in seen["aux"]["legend"]}
    assert all(legend.get(c.name) == c.color for c in landcover["classes"])


def test_the_qml_lists_exactly_the_catalog_classes(seen: dict, landcover: dict) -> None:
    expected = [[c.code, c.name, c.color] for c in landcover["classes"]]
    assert seen["qml"]["settings"]["classes"] == expected
    assert seen["qml"]["legend"] == [[c.name, c.color] for c in landcover["classes"]]


@pytest.mark.parametrize("variant", ["aux", "qml"])
def test_rendered_pixels_have_their_class_colour(seen: dict, landcover: dict, variant: str) -> None:
    image = _image(seen["png"][variant])
    pixels = landcover["pixels"]
    assert image.shape[:2] == pixels.shape
    assert (image[pixels == 0, 3] == 0).all()  # nodata is transparent
    present = [c for c in landcover["classes"] if (pixels == c.code).any()]
    assert len(present) >= 2
    for c in present:
        rgba = image[pixels == c.code]
        assert (rgba[:, 3] == 255).all() and (rgba[:, :3] == c.rgb).all(), c.name


def test_qgis_process_reads_the_raster(qgis, landcover: dict, tmp_path: Path) -> None:
    table = tmp_path / "unique.csv"
    done = subprocess.run(
        [QGIS_PROCESS, "--json", "run", "native:rasterlayeruniquevaluesreport", "--",
         f"INPUT={landcover['qml']}", "BAND=1", f"OUTPUT_TABLE={table}"],
        env=_clean_env(tmp_path), capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout[done.stdout.index("{"):])["results"]
    pixels = landcover["pixels"]
    assert results["TOTAL_PIXEL_COUNT"] == pixels.size
    assert results["NODATA_PIXEL_COUNT"] == int((pixels == 0).sum())
    with table.open() as f:
        counts = {int(float(row["value"])): int(row["count"]) for row in csv.DictReader(f)}
    values, numbers = np.unique(pixels[pixels > 0], return_counts=True)
    assert counts == dict(zip(values.tolist(), numbers.tolist(), strict=True))


# ------------------------------------------------------------------------------ the other outputs
def test_polygons_open_with_the_style_inside_the_geopackage(seen: dict, landcover: dict, extras: dict) -> None:
    layer = seen["polygons"]
    assert layer["valid"] and layer["crs"] == f"EPSG:{landcover['epsg']}" and layer["geometry"] == "MultiPolygon"
    assert layer["sublayers"] == ["land_cover"]  # QGIS hides layer_styles: one layer, no sublayer dialog
    present = sorted(int(v) for v in np.unique(extras["classes_raster"]) if v)
    assert layer["features"] == len(present) >= 2
    assert layer["renderer"] == "categorizedSymbol" and layer["settings"]["attribute"] == "code"
    expected = [[c.code, c.name, c.color] for c in landcover["classes"]]
    assert layer["settings"]["categories"] == expected  # every class, as in the map's legend
    assert layer["legend"] == [[c.name, c.color] for c in landcover["classes"]]


def test_polygons_are_drawn_in_their_class_colours(seen: dict, landcover: dict, extras: dict) -> None:
    image = _image(seen["png"]["polygons"])
    classes = extras["classes_raster"]
    colours, counts = np.unique(image[image[..., 3] == 255][:, :3], axis=0, return_counts=True)
    drawn = {tuple(c) for c, n in zip(colours.tolist(), counts.tolist(), strict=True) if n > 20}
    for c in landcover["classes"]:
        if (classes == c.code).mean() > 0.02:
            assert tuple(c.rgb) in drawn, f"{c.name} ({c.color}) is not drawn"


def test_qgis_reads_the_geopackage_without_a_version_warning(seen: dict) -> None:
    assert "may only be partially supported" not in seen["stderr"]
    assert "GeoPackage" not in seen["stderr"], seen["stderr"][-2000:]


def test_confidence_opens_as_a_viridis_ramp_with_transparent_nodata(seen: dict, extras: dict) -> None:
    from geoseg.utils.qgis_style import VIRIDIS

    layer = seen["confidence"]
    assert layer["valid"] and layer["has_nodata"] and layer["nodata"] == 255
    assert layer["band_description"].endswith("confidence")
    assert layer["renderer"] == "singlebandpseudocolor" and layer["renderer_class"] == "QgsSingleBandPseudoColorRenderer"
    settings = layer["settings"]
    assert (settings["band"], settings["min"], settings["max"], settings["ramp_type"]) == (1, 0, 100, 0)  # interpolated
    assert settings["ramp"] == [[10.0 * i, colour] for i, colour in enumerate(VIRIDIS)]
    assert layer["legend"][0] == ["0 %", VIRIDIS[0]] and layer["legend"][-1] == ["100 %", VIRIDIS[-1]]


def test_confidence_pixels_have_their_ramp_colour(seen: dict, extras: dict) -> None:
    from geoseg.utils.qgis_style import VIRIDIS

    image, values = _image(seen["png"]["confidence"]), extras["confidence_values"]
    assert image.shape[:2] == values.shape
    assert (image[values == 255, 3] == 0).all()  # nodata is transparent
    stops = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in VIRIDIS], dtype=float)
    valid = values <= 100
    expected = np.stack([np.interp(values[valid], np.linspace(0, 100, len(VIRIDIS)), stops[:, k]) for k in range(3)], -1)
    assert (image[valid, 3] == 255).all()
    assert np.abs(image[valid, :3] - expected).max() <= 2  # QGIS interpolates the same ramp


def test_feature_stack_opens_as_natural_colour(seen: dict, extras: dict) -> None:
    layer = seen["stack"]
    assert layer["valid"] and layer["renderer"] == "multibandcolor"
    names = extras["channel_names"]
    assert layer["settings"]["bands"] == [names.index(b) + 1 for b in ("B04", "B03", "B02")] == [4, 3, 2]
    assert layer["settings"]["stretch"] == [[0.0, 0.3, 1]] * 3  # 1 = StretchToMinimumMaximum
    assert layer["settings"]["transparent"] == [[0.0, 0.0, 0.0, 100.0]]


def test_feature_stack_pixels_are_the_fixed_reflectance_stretch(seen: dict, extras: dict) -> None:
    image, valid = _image(seen["png"]["stack"]), extras["valid"]
    assert image.shape[:2] == valid.shape and (~valid).any() and valid.any()
    assert (image[~valid, 3] == 0).all()  # masked pixels are transparent
    expected = np.clip(extras["rgb"] / 0.3 * 255, 0, 255).transpose(1, 2, 0)[valid]
    assert (image[valid, 3] == 255).all()
    assert np.abs(image[valid, :3] - expected).max() <= 1.01


def test_render_docs_draws_map_and_legend_pictures(qgis, landcover: dict, extras: dict, tmp_path: Path) -> None:
    """The README's pictures: small palette PNGs of the map, confidence and polygons with QGIS legends."""
    out = tmp_path / "images"
    done = subprocess.run([PYTHON, "-I", str(RENDER_DOCS), str(extras["landcover"]), str(extras["confidence"]),
                           str(extras["polygons"]), str(out), "300"],
                          env=_clean_env(tmp_path), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(report) == sorted(p.name for p in out.iterdir()) == sorted(
        ["qgis_landcover.png", "qgis_confidence.png", "qgis_polygons.png"])
    for name, drawn in report.items():
        image = _image(out / name)
        assert drawn["saved"] and drawn["map_width"] == 300 and drawn["legend_width"] > 40
        assert image.shape[1] == drawn["width"] and (out / name).stat().st_size < 100_000
    for name in ("qgis_landcover.png", "qgis_polygons.png"):
        image = _image(out / name)
        legend = image[:, report[name]["map_width"]:, :3].reshape(-1, 3)
        colours = {tuple(c) for c in legend.tolist()}
        for c in landcover["classes"]:
            assert tuple(c.rgb) in colours, f"{name}: no legend swatch for {c.name}"
