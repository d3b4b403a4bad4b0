"""
backtrack_build.py -- a PEP 517 / PEP 660 build backend with no dependency outside the
standard library, so that `pip install ./python` works without PyPI (setuptools' own
backend would need the `wheel` package, which a fresh virtual environment lacks).

It packs backtrack/ (pure Python) into a py3-none-any wheel and writes
backtrack/_build_info.py, which records the repository the wheel was built from: the
installed package looks for libbacktrack.so in that repository's build directories when no
installed library is found (see backtrack/_capi.py).
"""
import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # python/


def _project():
    """name, version, description, requires-python from pyproject.toml's [project]
    (simple `key = "value"` lines: tomllib is not in Python 3.9/3.10)."""
    text = (HERE / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project]", 1)[1].split("\n[", 1)[0]
    meta = dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]*)"', section, re.M))
    return meta


def _dist(meta):
    return f"{meta['name']}-{meta['version']}"


def _metadata(meta):
    readme = (HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else ""
    return (f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
            f"Summary: {meta.get('description', '')}\n"
            f"Requires-Python: {meta.get('requires-python', '>=3')}\n"
            f"License: {meta.get('license', '')}\n"
            f"Provides-Extra: numpy\nRequires-Dist: numpy; extra == \"numpy\"\n"
            f"Description-Content-Type: text/markdown\n\n{readme}")


WHEEL = "Wheel-Version: 1.0\nGenerator: backtrack_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _source_dir():
    """The repository root if python/ sits in one (include/backtrack.h beside it)."""
    root = HERE.parent
    return str(root) if (root / "include" / "backtrack.h").is_file() else None


def _package_files():
    for p in sorted((HERE / "backtrack").rglob("*.py")):
        rel = p.relative_to(HERE)
        if "__pycache__" in rel.parts or rel.name == "_build_info.py":
            continue
        yield rel.as_posix(), p.read_bytes()


def _hash(data):
    d = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={d}"


def _write_wheel(wheel_directory, files, meta):
    dist = _dist(meta)
    info = f"{dist}.dist-info"
    files = list(files) + [
        (f"{info}/METADATA", _metadata(meta).encode("utf-8")),
        (f"{info}/WHEEL", WHEEL.encode()),
        (f"{info}/top_level.txt", b"backtrack\n"),
    ]
    name = f"{dist}-py3-none-any.whl"
    record = "".join(f"{path},{_hash(data)},{len(data)}\n" for path, data in files)
    record += f"{info}/RECORD,,\n"
    with zipfile.ZipFile(Path(wheel_directory) / name, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files + [(f"{info}/RECORD", record.encode())]:
            zi = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return name


# ==== PEP 517 hooks ==================================================================


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    meta = _project()
    info = Path(metadata_directory) / f"{_dist(meta)}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(_metadata(meta), encoding="utf-8")
    (info / "WHEEL").write_text(WHEEL)
    (info / "top_level.txt").write_text("backtrack\n")
    return info.name


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    meta = _project()
    info = f"SOURCE_DIR = {_source_dir()!r}\n"
    files = list(_package_files()) + [("backtrack/_build_info.py", info.encode())]
    return _write_wheel(wheel_directory, files, meta)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """A wheel holding a .pth file that puts python/ on sys.path (PEP 660)."""
    meta = _project()
    pth = (str(HERE) + "\n").encode()
    return _write_wheel(wheel_directory, [(f"__editable__.{_dist(meta)}.pth", pth)], meta)


def build_sdist(sdist_directory, config_settings=None):
    meta = _project()
    dist = _dist(meta)
    name = f"{dist}.tar.gz"
    members = [("pyproject.toml", (HERE / "pyproject.toml").read_bytes()),
               ("_backend/backtrack_build.py", Path(__file__).read_bytes()),
               ("PKG-INFO", _metadata(meta).encode("utf-8"))]
    if (HERE / "README.md").exists():
        members.append(("README.md", (HERE / "README.md").read_bytes()))
    members += list(_package_files())
    with tarfile.open(Path(sdist_directory) / name, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path, data in members:
            ti = tarfile.TarInfo(f"{dist}/{path}")
            ti.size = len(data)
            ti.mtime = int(time.time())
            ti.mode = 0o644
            tar.addfile(ti, io.BytesIO(data))
    return name
