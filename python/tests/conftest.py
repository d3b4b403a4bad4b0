"""Shared fixtures. Run with Debian's python3 and python3-pytest:

    BACKTRACK_LIB=build/libbacktrack.so /usr/bin/python3 -m pytest -q python/tests

(ctest runs them as test_python with the build's library, CLI and model.) Environment:
BACKTRACK_LIB (the library), BT_TEST_MODEL (stories260K.gguf), BT_TEST_CLI (the backtrack
binary of the same build), BT_TEST_BUILD_DIR (that build directory).
"""
import os
import sys
from pathlib import Path

import pytest

PYDIR = Path(__file__).resolve().parent.parent          # python/
ROOT = PYDIR.parent                                      # the repository
sys.path.insert(0, str(PYDIR))                           # import the package from the tree
os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
sys.dont_write_bytecode = True


def _first(*paths):
    for p in paths:
        if p and Path(p).exists():
            return Path(p)
    return None


def _build_dir():
    env = os.environ.get("BT_TEST_BUILD_DIR")
    if env:
        return Path(env)
    lib = os.environ.get("BACKTRACK_LIB")
    if lib and Path(lib).is_file():
        return Path(lib).resolve().parent
    return ROOT / "build"


BUILD = _build_dir()
MODEL = _first(os.environ.get("BT_TEST_MODEL"), ROOT / "models" / "stories260K.gguf",
               ROOT.parent / "shared" / "models" / "stories260K.gguf")
CLI = _first(os.environ.get("BT_TEST_CLI"), BUILD / "backtrack")
if os.environ.get("BACKTRACK_LIB"):  # subprocesses run elsewhere: an absolute path
    os.environ["BACKTRACK_LIB"] = os.path.abspath(os.environ["BACKTRACK_LIB"])
elif (BUILD / "libbacktrack.so").exists():
    os.environ["BACKTRACK_LIB"] = str(BUILD / "libbacktrack.so")


@pytest.fixture(scope="session")
def model_path():
    if MODEL is None:
        pytest.fail("stories260K.gguf not found: set BT_TEST_MODEL (scripts/get-model.sh fetches it)")
    return str(MODEL)


@pytest.fixture(scope="session")
def cli():
    if CLI is None:
        pytest.fail("the backtrack CLI was not found: set BT_TEST_CLI")
    return str(CLI)


@pytest.fixture(scope="session")
def provider(model_path):
    from backtrack import LlamacppProvider
    p = LlamacppProvider(model_path)
    yield p
    p.close()
