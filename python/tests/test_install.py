"""`pip install ./python` into a fresh virtual environment, offline (no index at all), then
the package imported from another directory: it finds the library of an installed prefix
(pkg-config), or the build directories of the repository it was built from."""
import os
import subprocess
import sys
import venv

import pytest
from conftest import BUILD, PYDIR, ROOT

SCRIPT = r"""
import json, sys
import backtrack
from backtrack import BacktrackSampler, AntiSlopStrategy, BaseStrategy, LlamacppProvider
p = LlamacppProvider(sys.argv[1])

class NoCaps(BaseStrategy):           # a Python strategy, with or without numpy
    def __init__(self): self.caps = [t for t in range(p.n_vocab) if p.decode([t]).strip()[:1].isupper()]
    def on_logits(self, logits, continuation_tokens):
        for t in self.caps: logits[t] = float("-inf")
        return logits

text = "".join(BacktrackSampler(p, AntiSlopStrategy(p, ["Lily"])).generate_text(
    "Once upon a time", max_new_tokens=40, seed=1, cache_prompt=False))
nocaps = "".join(BacktrackSampler(p, NoCaps()).generate_text(
    "Once upon a time", max_new_tokens=40, seed=1, cache_prompt=False))
print(json.dumps({"file": backtrack.__file__, "lib": backtrack.library_path, "text": text,
                  "nocaps": nocaps, "numpy": backtrack._bridge.np is not None}))
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("BACKTRACK_LIB", "PYTHONPATH", "PKG_CONFIG_PATH", "PIP_INDEX_URL",
                        "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv (no system packages) with the package pip-installed, and a prefix
    holding `cmake --install` of the build under test."""
    tmp = tmp_path_factory.mktemp("install")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-index", str(PYDIR)],
                       capture_output=True, text=True, env=_env(), cwd=tmp, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = tmp / "prefix"
    r = subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return py, prefix, elsewhere


def run_script(py, cwd, model, **env):
    import json
    r = subprocess.run([str(py), "-c", SCRIPT, model], capture_output=True, text=True,
                       cwd=cwd, env=_env(**env), timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def in_process(model):
    from backtrack import AntiSlopStrategy, BacktrackSampler, LlamacppProvider
    p = LlamacppProvider(model)
    return "".join(BacktrackSampler(p, AntiSlopStrategy(p, ["Lily"])).generate_text(
        "Once upon a time", max_new_tokens=40, seed=1, cache_prompt=False))


def test_installed_package_finds_an_installed_library(installed, model_path):
    py, prefix, elsewhere = installed
    out = run_script(py, elsewhere, model_path, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    assert out["file"].startswith(str(py.parent.parent)) and "site-packages" in out["file"]
    assert out["lib"].startswith(str(prefix)), out["lib"]
    assert out["numpy"] is False  # a venv without system packages: the ctypes arrays
    assert out["text"] == in_process(model_path) and len(out["text"]) > 20
    assert out["nocaps"] and not any(w[:1].isupper() for w in out["nocaps"].split())


def test_installed_package_finds_the_build_it_came_from(installed, model_path):
    py, prefix, elsewhere = installed
    out = run_script(py, elsewhere, model_path)
    lib = out["lib"]
    # nothing installed system-wide here: the wheel recorded this repository
    if not (lib.startswith("/usr") or lib.startswith("lib")):
        assert lib.startswith(str(ROOT) + os.sep + "build"), lib
    assert out["text"] == in_process(model_path)


def test_backtrack_lib_wins_and_a_bad_one_is_an_import_error(installed, model_path, tmp_path):
    py, prefix, elsewhere = installed
    lib = prefix / "lib" / "libbacktrack.so"
    out = run_script(py, elsewhere, model_path, BACKTRACK_LIB=str(lib))
    assert out["lib"] == str(lib)
    r = subprocess.run([str(py), "-c", "import backtrack"], capture_output=True, text=True,
                       cwd=elsewhere, env=_env(BACKTRACK_LIB=str(tmp_path / "nope.so")))
    assert r.returncode != 0 and "ImportError" in r.stderr and "nope.so" in r.stderr


def test_editable_install(tmp_path, model_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-index", "-e", str(PYDIR)],
                       capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = run_script(py, tmp_path, model_path, BACKTRACK_LIB=os.environ["BACKTRACK_LIB"])
    assert out["file"] == str(PYDIR / "backtrack" / "__init__.py")
    assert not (PYDIR / "backtrack.egg-info").exists() and not (PYDIR / "build").exists()
