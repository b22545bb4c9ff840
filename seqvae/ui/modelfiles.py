"""The model directory as one zip file: download it, upload it back (safely)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from seqvae.bundle import FILES, BundleError, load, save

MAX_UNZIPPED_BYTES = 2 * 1024**3
_ALLOWED = {*FILES, "manifest.json"}


def to_zip(recommender: Any, *, metrics: dict[str, Any] | None = None,
           data: dict[str, Any] | None = None) -> bytes:
    """The model directory of `recommender`, zipped (files at the top level)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = save(recommender, Path(tmp) / "model", metrics=metrics, data=data)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(directory.iterdir()):
                archive.write(path, arcname=path.name)
        return buffer.getvalue()


def from_zip(data: bytes, name: str = "the upload") -> Any:
    """Load a zipped model directory. Raises `BundleError` with a readable message."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BundleError(f"{name} is not a zip file; download the model from the Train page "
                          "(or zip a model directory) and upload that") from None
    with archive, tempfile.TemporaryDirectory() as tmp:
        members = archive.infolist()
        # a model directory zipped with its folder: accept one top-level folder
        prefixes = {m.filename.split("/", 1)[0] for m in members if "/" in m.filename}
        strip = f"{prefixes.pop()}/" if len(prefixes) == 1 and all(
            "/" in m.filename for m in members) else ""
        total = 0
        for member in members:
            if member.is_dir():
                continue
            relative = member.filename[len(strip):] if strip else member.filename
            if relative not in _ALLOWED:
                raise BundleError(f"{name} holds {member.filename!r}, which is not part of a "
                                  "seqvae model directory; refused")
            total += member.file_size
            if total > MAX_UNZIPPED_BYTES:
                raise BundleError(f"{name} unpacks to more than 2 GB; refused")
            (Path(tmp) / relative).write_bytes(archive.read(member))
        return load(tmp)
