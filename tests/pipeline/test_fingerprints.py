"""What the pipeline fingerprints to decide reruns, for inputs that are not plain local files."""

from __future__ import annotations

import os
import zipfile

from geoseg.pipeline.state import file_fingerprint


def test_a_file_in_a_local_zip_is_fingerprinted_by_its_archive(tmp_path):
    archive = tmp_path / "S2.SAFE.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("S2.SAFE/B02.jp2", b"x" * 10)
    inner = f"/vsizip/{archive}/S2.SAFE/B02.jp2"
    first = file_fingerprint(inner)
    assert first["archive_size"] == archive.stat().st_size
    assert file_fingerprint(f"/vsizip/{{{archive}}}/S2.SAFE/B02.jp2")["archive_size"] == first["archive_size"]
    os.utime(archive, ns=(1, 1))  # a new download of the same name: a different fingerprint
    assert file_fingerprint(inner) != first


def test_remote_files_are_fingerprinted_by_location_without_a_request():
    for url in ("s3://bucket/T32/B02.tif", "https://example.invalid/B02.tif", "/vsicurl/https://example.invalid/x.tif"):
        assert file_fingerprint(url) == {"path": url}
