"""Review (issue 12): Python callbacks run on the thread that runs the C loop, not the one
that iterates: they still see the caller's context variables, and run without autograd as
the original's @torch.no_grad() generate() does."""
import contextvars
import gc
import os
import subprocess
import sys
import threading
import time
import types

import pytest
from conftest import PYDIR
from test_python_provider import PROMPT as MPROMPT
from test_python_provider import NumpyModel

from backtrack import BacktrackSampler, BaseStrategy

PROMPT = "Once upon a time"

def test_callbacks_see_the_callers_context_variables(provider):
    """Python callbacks run on the thread that runs the C loop: they see the context
    variables of the code that iterates (decimal contexts, request ids, ...)."""
    var = contextvars.ContextVar("request", default="unset")
    seen = set()

    class Look(BaseStrategy):
        def on_logits(self, logits, continuation_tokens):
            seen.add(var.get())
            return logits

    var.set("req-42")
    list(BacktrackSampler(provider, Look()).generate(PROMPT, max_new_tokens=3, seed=1))
    assert seen == {"req-42"}


def _fake_torch():
    """The part of torch's grad mode the package uses: thread-local, as torch's."""
    mod = types.ModuleType("torch")
    tls = threading.local()

    def is_grad_enabled():
        return getattr(tls, "on", True)

    class no_grad:
        def __enter__(self):
            self.prev = is_grad_enabled()
            tls.on = False

        def __exit__(self, *exc):
            tls.on = self.prev

    mod.is_grad_enabled, mod.no_grad = is_grad_enabled, no_grad
    return mod


@pytest.mark.parametrize("real", [False, True])
def test_python_callbacks_run_without_autograd(real, monkeypatch):
    """The original's generate() runs under @torch.no_grad(), so a torch provider or
    strategy never builds a graph; the generating thread here is another thread, where
    the caller's no_grad does not reach (grad mode is per thread in torch)."""
    if real:
        torch = pytest.importorskip("torch")
    else:
        torch = _fake_torch()
        monkeypatch.setitem(sys.modules, "torch", torch)
    grad = []

    class Model(NumpyModel):
        def generate(self, input_ids):
            grad.append(torch.is_grad_enabled())
            return super().generate(input_ids)

    m = Model()
    list(BacktrackSampler(m).generate(MPROMPT, max_new_tokens=5, seed=1))
    assert grad and not any(grad)


def test_a_generator_collected_on_its_own_generating_thread(provider):
    """A running generator dropped inside a reference cycle is finalized by the cyclic
    collector, which may run on any thread: also on the generating thread, in a Python
    callback (any allocation can trigger it). Its clean-up joined that very thread
    (RuntimeError, ignored in a finalizer) and never released the provider: every later
    generation on it said 'already running'."""
    at5, go = threading.Event(), threading.Event()

    class CollectAt5(BaseStrategy):
        def on_logits(self, logits, continuation_tokens):
            if len(continuation_tokens) == 5 and not go.is_set():
                at5.set()
                go.wait(10)
                gc.collect()  # what an allocation in a callback may trigger
            return logits

    s = BacktrackSampler(provider, CollectAt5())

    class Holder:
        pass

    gc.disable()  # only the collect above may free the cycle
    try:
        h = Holder()
        h.me = h
        h.gen = s.generate(PROMPT, max_new_tokens=200, seed=1)
        next(h.gen)
        assert at5.wait(10)
        del h
        go.set()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert len(list(s.generate(PROMPT, max_new_tokens=5, seed=1))) == 5
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        gc.enable()
    assert list(BacktrackSampler(provider).generate(PROMPT, max_new_tokens=5, seed=1))


INTERRUPT = r"""
import os, signal, sys, threading, time
from backtrack import BacktrackSampler, BaseStrategy, LlamacppProvider

stepping = threading.Event()
class Slow(BaseStrategy):
    slow = True
    def on_logits(self, logits, continuation_tokens):
        if self.slow:
            stepping.set()
            time.sleep(1.0)       # a step of a big model
        return logits

p = LlamacppProvider(sys.argv[1])
st = Slow()
s = BacktrackSampler(p, st)
def interrupt():              # Ctrl-C, and Ctrl-C again while the step finishes
    stepping.wait(60)         # both land inside one slow step, whatever the machine's load
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt).start()
try:
    for _ in s.generate("Once upon a time", max_new_tokens=100, seed=1):
        pass
    print("not interrupted")
except KeyboardInterrupt:
    pass
time.sleep(0.5)
st.slow = False
print(len(list(s.generate("Once upon a time", max_new_tokens=5, seed=1))))
"""


def test_a_second_ctrl_c_while_the_generation_stops(model_path, tmp_path):
    """Ctrl-C stops the generation; a second Ctrl-C while the current step finishes (a
    notebook user pressing interrupt again) broke out of the wait for the generating
    thread: the sampler and its provider stayed 'already running' for good."""
    env = dict(os.environ, PYTHONPATH=str(PYDIR))
    r = subprocess.run([sys.executable, "-c", INTERRUPT, model_path], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["5"]
