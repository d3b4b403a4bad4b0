"""The README's Python examples, extracted from README.md and run on stories260K, so that
they cannot rot. Substitutions: every "*.gguf" path becomes the test model; the
transformers example's chat template is llama.cpp's built-in "chatml" (stories260K has no
template of its own)."""
import os
import re
import subprocess
import sys

import pytest
from conftest import PYDIR, ROOT


def python_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run_block(code, model, tmp_path):
    code = re.sub(r'"[^"\n]*\.gguf"', repr(model), code)
    if "apply_chat_template" in code:
        code = code.replace(f"LlamacppProvider({model!r})",
                            f"LlamacppProvider({model!r}, chat_template='chatml')")
    env = dict(os.environ, PYTHONPATH=str(PYDIR))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_readme_has_the_four_examples():
    blocks = python_blocks()
    assert len(blocks) == 4
    assert "CreativeWritingStrategy" in blocks[0] and "AntiSlopStrategy" in blocks[1]
    assert "BaseStrategy" in blocks[2] and "BaseProvider" in blocks[3]


@pytest.mark.parametrize("i", range(4))
def test_readme_example_runs(i, model_path, tmp_path):
    code = python_blocks()[i]
    out = run_block(code, model_path, tmp_path)
    if i in (0, 1):  # the original's two: a story, then the duration line
        story, _, last = out.rpartition("\nDuration: ")
        assert len(story) > 200 and last.strip().endswith("seconds")
    if i == 1:
        for slop in ("Lily", "little girl"):
            assert slop.lower() not in story.lower()
    if i == 2:
        story, _, last = out.rstrip("\n").rpartition("\n")
        assert "Lily" not in story and len(story) > 200 and last.endswith("rewinds")
        assert int(last.split()[0]) > 0  # the model did reach for the word
    if i == 3:
        assert "cat" not in out and len(out) > 30
        # without the strategy the toy model does write it
        plain = run_block(code.replace('AntiSlopStrategy(model, ["cat"])', "None"), model_path,
                          tmp_path)
        assert "cat" in plain
