"""A real headless QGIS (Debian's) opens the land-cover map the pipeline writes.

The map comes from the tiny pipeline (tile → train → predict on a small demo scene, shared
with tests/pipeline). QGIS runs in a subprocess with Debian's ``/usr/bin/python3`` and a
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
def seen(qgis, landcover: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What QGIS reports for both variants (one QGIS process)."""
    tmp = tmp_path_factory.mktemp("qgis-run")
    report = tmp / "report.json"
    args = [PYTHON, "-I", str(PROBE), str(report)]
    for variant in ("aux", "qml"):
        args += [str(landcover[variant]), str(tmp / f"{variant}.png")]
    done = subprocess.run(args, env=_clean_env(tmp), capture_output=True, text=True, timeout=600, cwd=tmp)
    assert done.returncode == 0 and report.is_file(), done.stderr[-3000:]
    data = json.loads(report.read_text())
    return {"version": data["qgis_version"], "png": {v: tmp / f"{v}.png" for v in ("aux", "qml")},
            **{v: data["layers"][str(landcover[v])] for v in ("aux", "qml")}}


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
    by_value = {value: (label, color) for value, label, color in seen["aux"]["classes"]}
    for c in landcover["classes"]:
        assert by_value[c.code] == (c.name, c.color), c
    legend = {label: color for label, color in seen["aux"]["legend"]}
    assert all(legend.get(c.name) == c.color for c in landcover["classes"])


def test_the_qml_lists_exactly_the_catalog_classes(seen: dict, landcover: dict) -> None:
    expected = [[c.code, c.name, c.color] for c in landcover["classes"]]
    assert seen["qml"]["classes"] == expected
    assert seen["qml"]["legend"] == [[c.name, c.color] for c in landcover["classes"]]


@pytest.mark.parametrize("variant", ["aux", "qml"])
def test_rendered_pixels_have_their_class_colour(seen: dict, landcover: dict, variant: str) -> None:
    from PIL import Image

    image = np.asarray(Image.open(seen["png"][variant]).convert("RGBA"))
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
