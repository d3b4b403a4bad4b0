"""Review (issue 12): Python callbacks run on the thread that runs the C loop, not the one
that iterates: they still see the caller's context variables, and run without autograd as
the original's @torch.no_grad() generate() does."""
import contextvars
import gc
import sys
import threading
import time
import types

import pytest
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
    go = threading.Event()

    class CollectAt5(BaseStrategy):
        def on_logits(self, logits, continuation_tokens):
            if len(continuation_tokens) == 5 and not go.is_set():
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
