"""Review (issue 12): the logits a strategy receives are the C sampler's own buffer (no
copy); an array kept past the call must never read freed memory."""
import os
import subprocess
import sys

import pytest
from conftest import PYDIR

KEEP = r"""
import sys
import numpy as np
import backtrack
from backtrack import BacktrackSampler, BaseProvider, BaseStrategy
NUMPY = backtrack._bridge.np is not None
V = 200_000   # the sampler's logits buffer is large enough to be unmapped when freed

class Big(BaseProvider):
    def get_vocab_size(self): return V
    def encode(self, text, add_special_tokens=True): return [ord(c) % 128 for c in text]
    def decode(self, toks): return "".join(chr(t % 128) for t in toks)
    def generate(self, ids):
        a = np.full(V, -5.0, dtype=np.float32); a[:128] = 0.0; return a
    def get_eos_token_id(self): return V - 1

class Keep(BaseStrategy):
    prev = None
    def on_logits(self, logits, continuation_tokens):
        if self.prev is not None:
            float(self.prev[0])
        self.prev = logits[:] if NUMPY else logits   # a view, not a copy
        return logits

k = Keep()
for i in range(3):       # a new sampler per prompt: the last one's buffer is freed
    s = BacktrackSampler(Big(), k)
    n = len(list(s.generate("abc", max_new_tokens=5, seed=i)))
    s.close()
    del s
print(n, float(sum(k.prev)))
"""


@pytest.mark.parametrize("no_numpy", ["", "1"])
def test_logits_kept_past_the_call_stay_readable(tmp_path, no_numpy):
    """A strategy that keeps `logits` without copying read freed memory once the sampler
    was closed: the process died (SIGSEGV). The C sampler now lives while any array over
    its buffer does."""
    env = dict(os.environ, PYTHONPATH=str(PYDIR), BACKTRACK_NO_NUMPY=no_numpy)
    r = subprocess.run([sys.executable, "-c", KEEP], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, f"rc {r.returncode}: {r.stderr[-2000:]}"
    n, total = r.stdout.split()
    assert int(n) == 5 and float(total) == -5.0 * (200_000 - 128)
