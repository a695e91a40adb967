"""Remote reads over HTTP (issue 14), against a local server on 127.0.0.1 (no network needed).

The scene is a multi-band Cloud-Optimized GeoTIFF written by the test from the real L2A
product of ../shared/data (a 512 x 512 px window of its eleven 60 m bands and its 60 m SCL,
with clouds, clear land and the no-data edge; overviews 2 and 4, averaged). The server
(:mod:`tests.foundation._http_server`) answers HTTP Range requests as a static file server
does, or misbehaves on purpose:

* ``geoseg inspect http://…/scene.tif`` prints what it prints for the local file (sample and
  ``--full``), and ``open_scene`` on the URL reads the same pixels as locally;
* ``/vsicurl/http://…`` and ``https://…`` (a server with a self-signed certificate made by the
  test with ``openssl``, accepted through ``GDAL_HTTP_UNSAFESSL=YES``) give the same ``inspect``
  and a bit-identical ``features`` stack; without that variable the certificate is refused in
  one line;
* a missing file (404), a connection dropped after the headers (at open, or later while the
  pixels are read) and a server that ignores ``Range`` each give exit code 2 and one
  ``error:`` line naming the URL as written, with no traceback, within seconds
  (``GDAL_HTTP_TIMEOUT=2``, ``GDAL_HTTP_MAX_RETRY=0`` in the command's environment); for
  ``features``, nothing is written.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.shutil import copy as copy_raster
from rasterio.windows import Window

from geoseg.io import open_scene, read_scl, read_window
from geoseg.io.reader import close_cached
from geoseg.io.summary import summarise_scene
from tests.conftest import shared
from tests.foundation._http_server import self_signed, serve_folder, url
from tests.reliability.conftest import assert_refused, run_cli, run_inproc, snapshot

SAFE = ("s2_l2a_T29UNU_scl", "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE")
WINDOW = Window(768, 512, 512, 512)  # 60 m px: clear land, clouds, shadows and the no-data edge
FAST_FAIL = {"GDAL_HTTP_TIMEOUT": "2", "GDAL_HTTP_CONNECTTIMEOUT": "2", "GDAL_HTTP_MAX_RETRY": "0"}


@pytest.fixture(scope="module")
def cog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``scene.tif``: a 12-band COG (B01…B12 without B08, then SCL) cut from the real L2A product."""
    granule = next((shared(*SAFE) / "GRANULE").iterdir())
    files = sorted((granule / "IMG_DATA" / "R60m").glob("*_B*_60m.jp2")) + \
        sorted((granule / "IMG_DATA" / "R60m").glob("*_SCL_60m.jp2"))
    names = [f.stem.split("_")[-2] for f in files]
    assert names[-1] == "SCL" and len(names) == 12
    folder = tmp_path_factory.mktemp("http-root")
    stack = folder.parent / f"{folder.name}-stack.tif"
    with rasterio.open(files[0]) as ds:
        profile = {"driver": "GTiff", "width": WINDOW.width, "height": WINDOW.height, "count": len(files),
                   "dtype": "uint16", "crs": ds.crs, "transform": ds.transform @ Affine.translation(WINDOW.col_off, WINDOW.row_off), "nodata": 0}
    with rasterio.open(stack, "w", **profile) as dst:
        for i, (path, name) in enumerate(zip(files, names, strict=True), start=1):
            with rasterio.open(path) as src:
                dst.write(src.read(1, window=WINDOW).astype("uint16"), i)
            dst.set_band_description(i, name)
        dst.update_tags(BOA_ADD_OFFSET="-1000", PROCESSING_LEVEL="L2A")
    copy_raster(stack, folder / "scene.tif", driver="COG", BLOCKSIZE=128, COMPRESS="DEFLATE",
                OVERVIEW_RESAMPLING="AVERAGE")
    stack.unlink()
    with rasterio.open(folder / "scene.tif") as ds:
        assert ds.descriptions[-1] == "SCL" and ds.overviews(1) == [2, 4]
    return folder


@pytest.fixture()
def http_server() -> Iterator[Callable[..., Any]]:
    """Start servers with ``http_server(folder, mode=…)``; every one is stopped when the test ends, pass or fail."""
    with contextlib.ExitStack() as stack:
        yield lambda folder, mode="range", tls=None: stack.enter_context(serve_folder(folder, mode=mode, tls=tls))
        close_cached()  # the reader's cached handles of this test's URLs


def test_the_fixture_stops_its_server_when_the_test_fails(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(RuntimeError, match="the test failed"), serve_folder(tmp_path) as server:
        port = server.server_port
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        raise RuntimeError("the test failed")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_inspect_over_http_equals_the_local_file(cog_dir: Path, http_server) -> None:
    server = http_server(cog_dir)
    remote, local = url(server, "scene.tif"), cog_dir / "scene.tif"
    for extra in ((), ("--full",)):
        expected = run_inproc("inspect", local, *extra)
        result = run_inproc("inspect", remote, *extra)
        assert expected.returncode == 0 and result.returncode == 0, result.stderr + expected.stderr
        assert result.stdout.splitlines()[0] == f"scene       scene  ({remote})"
        assert result.stdout.splitlines()[1:] == expected.stdout.splitlines()[1:]
    assert "level L2A" in result.stdout and "[metadata] BOA_ADD_OFFSET=-1000 tag" in result.stdout
    assert "cloud medium probability" in result.stdout and "SCL         60 m" in result.stdout
    assert any(status == 206 for _, _, _, status in server.requests)  # read by ranges, not downloaded


def test_sampled_summary_over_http_equals_the_local_file(cog_dir: Path, http_server) -> None:
    """The decimated sample reads the COG's overviews (bands) and its full-resolution SCL over HTTP."""
    server = http_server(cog_dir)
    # the 10 m grid is 3072 px a side: a 1/32 sample (96 px) is read from the 1/4 overview (128 px) of the file
    remote = summarise_scene(open_scene(url(server, "scene.tif")), sample=True, max_side=128)
    local = summarise_scene(open_scene(cog_dir / "scene.tif"), sample=True, max_side=128)
    assert remote.sample == local.sample and local.sample is not None
    assert local.sample.factor == 32 and len(local.sample.overviews) == 11
    assert (remote.valid_fraction, remote.scl_shares) == (local.valid_fraction, local.scl_shares)
    assert remote.band_stats == local.band_stats
    assert 0.05 < local.valid_fraction < 0.5 and set(local.scl_shares) <= set(range(12))


def test_open_scene_on_the_url_reads_the_same_pixels(cog_dir: Path, http_server) -> None:
    server = http_server(cog_dir)
    given = url(server, "scene.tif")
    remote, local = open_scene(given), open_scene(cog_dir / "scene.tif")
    assert remote.path == given and remote.bands["B04"].path == given
    assert (remote.grid, list(remote.bands), remote.offset, remote.level) == \
        (local.grid, list(local.bands), local.offset, local.level)
    masks = []
    for window in (Window(0, 0, 512, 512), Window(2200, 1600, 600, 400), Window(301, 1003, 77, 150)):
        got, valid = read_window(remote, window, list(remote.bands))
        expected, expected_valid = read_window(local, window, list(local.bands))
        np.testing.assert_array_equal(valid, expected_valid)
        for name, arr in expected.items():
            assert got[name].tobytes() == arr.tobytes(), name  # bit for bit
        np.testing.assert_array_equal(read_scl(remote, window), read_scl(local, window))
        masks.append(valid.ravel())
    assert np.concatenate(masks).any() and not np.concatenate(masks).all()


def test_missing_file_is_one_line_naming_the_url(cog_dir: Path, http_server) -> None:
    server = http_server(cog_dir)
    given = url(server, "missing.tif")
    line = assert_refused(run_cli("inspect", given, env=FAST_FAIL, timeout=60), given)
    assert "404" in line and "/vsicurl/" not in line


@pytest.mark.parametrize("mode", ["drop", "drop-data", "stall"])
def test_dropped_connection_is_one_line_not_a_hang(cog_dir: Path, http_server, mode: str) -> None:
    """The server sends the headers, then closes the socket: at open (``drop``), or only once
    the header has been read and the pixels are fetched (``drop-data``); or it sends the headers
    and then nothing (``stall``): GDAL_HTTP_TIMEOUT (2 s here) ends the wait."""
    server = http_server(cog_dir, mode)
    given = url(server, "scene.tif")
    start = time.perf_counter()
    result = run_cli("inspect", given, env=FAST_FAIL, timeout=60)
    seconds = time.perf_counter() - start
    line = assert_refused(result, given)
    assert seconds < 20, f"took {seconds:.0f} s"
    assert any(path == "/scene.tif" for _, path, _, _ in server.requests)
    if mode in ("drop", "stall"):  # nothing came: GDAL cannot tell it from a file that is not a raster
        assert "the connection was cut or timed out" in line
    else:  # the file opened: the failed read of its pixels is reported as such
        assert "cannot read" in line and "the connection failed" in line


def test_server_without_range_support(cog_dir: Path, http_server) -> None:
    """A server answering ``200`` with the whole file to a range request: GDAL refuses it; whatever
    it does, the result is either exactly the local one or one clear line naming the URL."""
    server = http_server(cog_dir, "no-range")
    given = url(server, "scene.tif")
    result = run_cli("inspect", given, env=FAST_FAIL, timeout=60)
    if result.returncode == 0:
        expected = run_inproc("inspect", cog_dir / "scene.tif")
        assert result.stdout.splitlines()[1:] == expected.stdout.splitlines()[1:]
    else:
        line = assert_refused(result, given)
        assert "Range" in line
    assert all(status == 200 for _, _, _, status in server.requests)


def _pixels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.read_masks(1)


@pytest.fixture(scope="module")
def local_features(cog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    out = tmp_path_factory.mktemp("local-features") / "f.tif"
    result = run_inproc("features", cog_dir / "scene.tif", "--out", out, "--resolution", "60", "--recipe", "rgb", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    return _pixels(out)


def test_vsicurl_and_https_equal_the_local_file(cog_dir: Path, http_server, local_features, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    tls = self_signed(tmp_path)
    if tls is None:
        pytest.skip("no openssl command to make a certificate for the HTTPS server")
    monkeypatch.setenv("GDAL_HTTP_UNSAFESSL", "YES")  # the test's self-signed certificate
    expected = run_inproc("inspect", cog_dir / "scene.tif")
    plain, secure = http_server(cog_dir), http_server(cog_dir, tls=tls)
    for given in (f"/vsicurl/{url(plain, 'scene.tif')}", url(secure, "scene.tif")):
        result = run_inproc("inspect", given)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == f"scene       scene  ({given})"
        assert result.stdout.splitlines()[1:] == expected.stdout.splitlines()[1:]
        out = tmp_path / f"{given.split(':')[0].strip('/').replace('/', '_')}.tif"
        done = run_inproc("features", given, "--out", out, "--resolution", "60", "--recipe", "rgb", "--no-progress")
        assert done.returncode == 0, done.stdout + done.stderr
        values, mask = _pixels(out)
        assert values.tobytes() == local_features[0].tobytes()  # bit for bit
        np.testing.assert_array_equal(mask, local_features[1])
    assert url(secure, "scene.tif").startswith("https://127.0.0.1:")
    assert any(status == 206 for _, _, _, status in secure.requests)  # read by ranges over TLS
    monkeypatch.delenv("GDAL_HTTP_UNSAFESSL")
    close_cached()
    refused = run_cli("inspect", url(secure, "scene.tif"), env=FAST_FAIL, timeout=60)
    assert "certificate" in assert_refused(refused, url(secure, "scene.tif")).lower()


@pytest.mark.parametrize("mode", ["missing", "drop-data"])
def test_features_of_a_missing_or_cut_remote_file_write_nothing(cog_dir: Path, http_server, tmp_path: Path,
                                                               mode: str) -> None:
    """A 404, or a connection dropped once the pixels are read: one line, exit code 2, no output file."""
    server = http_server(cog_dir, "range" if mode == "missing" else mode)
    given = url(server, "missing.tif" if mode == "missing" else "scene.tif")
    out = tmp_path / "maps"
    out.mkdir()
    (out / "notes.txt").write_text("my own file\n")
    before = snapshot(out)
    result = run_cli("features", given, "--out", out / "f.tif", "--resolution", "60", "--recipe", "rgb", "--no-progress",
                     env=FAST_FAIL, timeout=120)
    line = assert_refused(result, given)
    assert ("404" in line) if mode == "missing" else ("cannot read" in line and "the connection failed" in line)
    assert snapshot(out) == before  # nothing written, no temporary file left
