"""Review: backpressure. The C loop runs on a worker thread and hands the released tokens
to the generator through a queue; the queue was unbounded, so a consumer that stopped
pulling (without closing the generator) did not pause the generation as the original's
lazy generator does: the worker ran on to max_new_tokens, burning CPU and keeping the
provider busy. The hand-off is bounded now: the C loop waits in its release callback (GIL
released) while the consumer does not pull, and resumes, unchanged, when it pulls again."""
import contextlib
import gc
import os
import subprocess
import sys
import threading
import time
import weakref

import pytest
from conftest import PYDIR

from backtrack import AntiSlopStrategy, BacktrackSampler, BaseStrategy, LlamacppProvider

PROMPT = "Once upon a time"
N = 2000          # without backpressure the worker ran on to it (past the context: it shifts)
SHORT = 300       # long enough for the hand-off's bound to show, short under ASan
BOUND = 3 + 64    # 3 tokens taken, and "a few dozen" more at most run ahead of the reader


class Count(BaseStrategy):
    """Counts the C loop's steps (one on_logits per draw); changes nothing."""

    def __init__(self):
        self.calls = 0

    def on_logits(self, logits, continuation_tokens):
        self.calls += 1
        return logits


def _no_eog(provider):
    # the story must not end before the context does: ban the end-of-generation tokens
    return {t: -1e9 for t in provider.get_eog_token_ids()}


def _settled(read, bound, limit=60.0):
    """Wait until read() stays the same over 0.5 s; read() must never exceed `bound`
    meanwhile. Returns the settled value."""
    deadline = time.monotonic() + limit
    while True:
        a = read()
        time.sleep(0.5)
        b = read()
        assert b <= bound, f"the C loop ran on while the consumer paused: {b} steps"
        if a == b:
            return b
        assert time.monotonic() < deadline, "the C loop never settled"


def _worker():
    ts = [t for t in threading.enumerate() if t.name == "backtrack-generate"]
    assert len(ts) == 1
    return ts[0]


def _cpu_s(thread):
    """CPU time (user + system) the thread has used, from /proc."""
    assert thread.is_alive(), "the generation ran to its end while the consumer paused"
    with open(f"/proc/self/task/{thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_paused_consumer_pauses_the_python_strategy(provider):
    """Take 3 tokens of a 2000-token generation, then pause with the generator alive: the
    strategy's step count stays bounded and still; resuming gives exactly the tokens of an
    uninterrupted run with the same seed."""
    bias = _no_eog(provider)
    want = list(BacktrackSampler(provider, Count()).generate(
        PROMPT, max_new_tokens=N, seed=11, logit_bias=bias))
    assert len(want) > 2 * BOUND  # the test means something only if the run is long
    st = Count()
    s = BacktrackSampler(provider, st)
    with contextlib.closing(s.generate(PROMPT, max_new_tokens=N, seed=11,
                                       logit_bias=bias)) as g:  # closed if the test fails
        got = [next(g) for _ in range(3)]
        paused = _settled(lambda: st.calls, BOUND)
        assert paused >= 3
        assert s.stats is None  # the generation has not ended
        got += list(g)
    assert got == want
    assert st.calls == len(want)
    assert s.stats.n_released == len(want) == N
    assert s.stats.stop_reason == "max_new_tokens"


def test_a_paused_consumer_pauses_the_c_loop(provider):
    """The same with the whole loop in C (no Python callback but the release): the
    generating thread neither finishes nor uses CPU while the consumer pauses."""
    bias = _no_eog(provider)
    s = BacktrackSampler(provider)
    want = "".join(s.generate_text(PROMPT, max_new_tokens=SHORT, seed=12, logit_bias=bias))
    n_want = s.stats.n_released
    assert n_want == SHORT
    s = BacktrackSampler(provider)
    with contextlib.closing(s.generate_text(PROMPT, max_new_tokens=SHORT, seed=12,
                                            logit_bias=bias)) as g:
        got = [next(g) for _ in range(3)]
        w = _worker()
        cpu = _settled(lambda: _cpu_s(w), float("inf"))
        time.sleep(0.5)
        assert w.is_alive(), "the generation ran to its end while the consumer paused"
        assert _cpu_s(w) - cpu < 0.05
        assert s.stats is None
        got += list(g)
    assert "".join(got) == want
    assert s.stats.n_released == n_want


def test_closing_a_paused_generator(provider):
    """A paused generation (its worker waiting for the consumer) ends when the generator
    is closed, explicitly or by being dropped: the provider is free at once."""
    bias = _no_eog(provider)
    s = BacktrackSampler(provider)
    want = list(s.generate(PROMPT, max_new_tokens=50, seed=3))
    for how in ("close", "del"):
        g = s.generate(PROMPT, max_new_tokens=N, seed=4, logit_bias=bias)
        next(g)
        w = _worker()
        time.sleep(0.3)
        if how == "close":
            g.close()
        else:
            del g
        assert not w.is_alive()
        assert s.stats.stop_reason == "caller"
        assert list(s.generate(PROMPT, max_new_tokens=50, seed=3)) == want


def test_cancel_ends_a_paused_generation(provider):
    """sampler.cancel() ends a generation whose consumer pauses (the C loop no longer waits
    for room): the consumer then reads the tokens released before the cancel, a prefix of
    the uninterrupted run."""
    bias = _no_eog(provider)
    s = BacktrackSampler(provider)
    want = list(s.generate(PROMPT, max_new_tokens=SHORT, seed=5, logit_bias=bias))
    with contextlib.closing(s.generate(PROMPT, max_new_tokens=SHORT, seed=5,
                                       logit_bias=bias)) as g:
        got = [next(g) for _ in range(3)]
        w = _worker()
        time.sleep(0.3)
        s.cancel()
        w.join(10)
        assert not w.is_alive(), "cancel() left the generation waiting for the consumer"
        got += list(g)
    assert 3 <= len(got) <= BOUND + 1 and got == want[:len(got)]
    assert s.stats.stop_reason == "caller" and s.stats.n_released == len(got)
    assert list(s.generate(PROMPT, max_new_tokens=20, seed=5, logit_bias=bias)) == want[:20]


def test_an_exception_in_a_callback_of_a_paused_generation(provider):
    """A strategy that raises after the consumer paused: the consumer resumes, reads what
    was released before, and gets the exception."""
    class FailAt(BaseStrategy):
        def on_logits(self, logits, continuation_tokens):
            if len(continuation_tokens) == 20:
                raise ValueError("boom at 20")
            return logits

    s = BacktrackSampler(provider, FailAt())
    with contextlib.closing(s.generate(PROMPT, max_new_tokens=N, seed=6,
                                       logit_bias=_no_eog(provider))) as g:
        got = [next(g)]
        time.sleep(0.3)
        with pytest.raises(ValueError, match="boom at 20"):
            for t in g:
                got.append(t)
    assert len(got) == 20
    assert len(list(s.generate(PROMPT, max_new_tokens=5, seed=6))) == 5


def test_a_paused_generation_dropped_in_a_cycle_with_its_sampler(model_path):
    """A paused generation dropped together with the object that kept it, its sampler,
    provider and strategy (a request handler: a reference cycle). The cyclic collector
    finalized the C strategy and the provider (freed them) while the C loop waited on
    them, then the generator, which woke the loop on freed memory (ASan:
    heap-use-after-free). They are kept now until the loop has returned."""
    class Handler:
        pass

    gc.collect()
    gc.disable()  # only the collects below free the cycle
    try:
        h = Handler()
        h.me = h
        h.p = LlamacppProvider(model_path)
        h.st = AntiSlopStrategy(h.p, ["park"])
        h.s = BacktrackSampler(h.p, h.st)
        h.g = h.s.generate(PROMPT, max_new_tokens=N, seed=1, logit_bias=_no_eog(h.p))
        next(h.g)
        w = _worker()
        time.sleep(0.3)  # the C loop waits for the consumer
        ref = weakref.ref(h.s)
        del h
        gc.collect()
        w.join(10)
        assert not w.is_alive(), "the collected generator did not end its generation"
        gc.collect()
        assert ref() is None
    finally:
        gc.enable()


EXIT = r"""
import sys
from backtrack import BacktrackSampler, BaseStrategy, LlamacppProvider

class Ended(BaseStrategy):
    def reset(self):  # called when a generation ends
        print("ended", flush=True)

p = LlamacppProvider(sys.argv[1])
s = BacktrackSampler(p, Ended())
g = s.generate("Once upon a time", max_new_tokens=2000, seed=1,
               logit_bias={t: -1e9 for t in p.get_eog_token_ids()})
print(next(g), flush=True)
# the script ends here, its generator paused and never closed
"""


def test_a_script_that_ends_with_a_paused_generator(model_path, tmp_path):
    """The interpreter's exit ends a paused generation: its C loop returns (the strategy's
    reset runs) before the interpreter's finalization, which frees the provider and the
    sampler and where the generating thread (a daemon) can no longer take the GIL; the
    exit does not hang."""
    env = dict(os.environ, PYTHONPATH=str(PYDIR))
    r = subprocess.run([sys.executable, "-c", EXIT, model_path], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.split()
    assert len(out) == 2 and out[0].isdigit() and out[1] == "ended", r.stdout
    assert "Exception ignored" not in r.stderr, r.stderr[-3000:]
