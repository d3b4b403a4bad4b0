"""The ctypes mirrors have the C layout: a C program compiled against include/backtrack.h
prints sizeof and offsetof of every mirrored field; they must equal ctypes' values."""
import ctypes
import shutil
import subprocess

import pytest
from conftest import ROOT

from backtrack import _capi as C

# structures the library may grow at the end (only ever read or passed by pointer)
GROWS = {"bt_view", "bt_llama_params"}


def test_struct_layout_matches_the_header(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no C compiler: scripts/setup.sh installs build-essential")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <backtrack.h>",
             "int main(void) {"]
    expect = []
    for st in C.STRUCTS:
        name = st.__name__
        lines.append(f'printf("{name} %zu\\n", sizeof({name}));')
        expect.append((name, ctypes.sizeof(st)))
        for field, _ in st._fields_:
            if field == "_pad_":
                continue
            lines.append(f'printf("{name}.{field} %zu\\n", offsetof({name}, {field}));')
            expect.append((f"{name}.{field}", getattr(st, field).offset))
    lines += ["return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    r = subprocess.run([cc, "-std=c11", "-I", str(ROOT / "include"), str(src), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # a field the header lacks fails here
    got = dict(line.split() for line in subprocess.run([str(exe)], capture_output=True,
                                                         text=True, check=True).stdout.splitlines())
    for key, val in expect:
        c_val = int(got[key])
        if "." not in key and key in GROWS:
            assert c_val <= val or key == "bt_view", f"sizeof({key}): C {c_val}, ctypes {val}"
        else:
            assert c_val == val, f"{key}: C says {c_val}, the ctypes mirror {val}"


def test_llama_params_mirror_every_field_of_the_header():
    """bt_llama_params is passed by pointer with room to spare (_pad_), but every field the
    header declares must be mirrored by name, so that each can be set from Python."""
    text = (ROOT / "include" / "backtrack.h").read_text()
    body = text.split("typedef struct bt_llama_params {", 1)[1].split("} bt_llama_params;", 1)[0]
    import re
    fields = re.findall(r"^\s*(?:const\s+)?\w+\s*\*?\s*(\w+);", body, re.M)
    assert fields and fields == C.LLAMA_PARAMS_MIRRORED
