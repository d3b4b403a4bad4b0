"""BacktrackSampler: the original's sampler, running libbacktrack's generation loop."""
import atexit
import collections
import contextlib
import contextvars
import ctypes
import math
import sys
import threading
from dataclasses import dataclass

from . import _capi as C
from . import _bridge
from .errors import BacktrackError
from .provider.base_provider import BaseProvider
from .strategy._c_strategy import CStrategy
from .strategy.chain_strategy import ChainStrategy
from .strategy.base_strategy import BaseStrategy


@dataclass(frozen=True)
class Stats:
    """The statistics of one generation (bt_stats). stop_reason: "eog",
    "max_new_tokens", "max_length", "step_cap", "caller" or "error"."""
    n_prompt: int
    n_released: int
    n_discarded: int
    n_rewinds: int
    n_steps: int
    n_evaluated: int
    n_eval_calls: int
    n_prompt_reevaluated: int
    n_dead_ends: int
    stop_reason: str
    seed: int
    t_prompt_ms: float
    t_total_ms: float
    n_prompt_cached: int

    @classmethod
    def from_c(cls, st):
        kw = {name: getattr(st, name) for name, _ in C.bt_stats._fields_}
        kw["stop_reason"] = C.bt_stop_reason_name(st.stop_reason).decode()
        return cls(**kw)

    @property
    def tokens_per_s(self):
        """Draws per second after the prompt (the CLI's tok_per_s)."""
        ms = self.t_total_ms - self.t_prompt_ms
        return self.n_steps * 1000.0 / ms if ms > 0 else 0.0


_DONE = object()


def _no_grad():
    """torch.no_grad() when torch is loaded, as the original's @torch.no_grad() generate:
    the Python callbacks run on the generating thread, which the caller's grad mode (per
    thread in torch) does not reach."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "no_grad"):
        return torch.no_grad()
    return contextlib.nullcontext()
_busy = set()  # id() of the providers and strategies a generation runs on
_busy_lock = threading.Lock()
_running = {}  # id -> stop(): every generation started and not yet ended (under _busy_lock)
_BUSY_MSG = ("a generation is already running on this sampler, its provider or its strategy "
             "(a strategy keeps per-generation state: one generation at a time): finish or "
             "close() its generator first")


# ==== Hand-off ==========================================================================

# released items (tokens, or text pieces) the generating thread may run ahead of the
# generator's consumer; then the C loop waits in its release callback until it pulls
HANDOFF_ITEMS = 32


class _Handoff:
    """The bounded hand-off of released items from the generating thread (put) to the
    generator (get): the original's generator is lazy, and a consumer that stops pulling
    (without closing the generator) must pause the generation, not let it run on to
    max_new_tokens. Every wait releases the GIL. The lock is re-entrant: the cyclic
    collector may close the generator on the generating thread, inside put()."""
    __slots__ = ("_cond", "_items", "_cap", "_closed")

    def __init__(self, cap):
        self._cond = threading.Condition(threading.RLock())
        self._items = collections.deque()
        self._cap = cap
        self._closed = False

    def put(self, item):
        """Producer: wait while `cap` items are unread. False (item dropped): the consumer
        is gone, stop the generation."""
        with self._cond:
            while len(self._items) >= self._cap and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def finish(self):
        """Producer: the generation ended (never waits)."""
        with self._cond:
            self._items.append(_DONE)
            self._cond.notify_all()

    def get(self):
        """Consumer: the next item, _DONE after the last; waits while there is none."""
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self):
        """The consumer is gone: a waiting put() returns False, and so does every later one."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def unbound(self):
        """Never wait again (cancel(): the C loop ends at its next step, and what it
        releases until then is kept for the consumer)."""
        with self._cond:
            self._cap = math.inf
            self._cond.notify_all()


@atexit.register
def _stop_at_exit():
    """At exit, before the interpreter's finalization: stop every generation still running
    (a paused consumer's generator, kept to the end of the script) and wait for its thread.
    Past this point the generating thread, a daemon, can no longer take the GIL: its C loop
    stayed where it waited while the finalization freed its sampler, provider and
    strategies (and the strategy's end of generation, reset, never ran)."""
    with _busy_lock:
        stops = list(_running.values())
    for stop in stops:
        try:
            stop()
        except BaseException:  # pragma: no cover - exiting anyway
            pass


def _provider_ptr(provider):
    """(bt_provider *, owned): the C provider behind `provider`."""
    c = getattr(provider, "_c_provider", None)
    if callable(c):
        return c(), False
    return _bridge.provider_handle(provider, BaseProvider), True


def _strategy_ptr(strategy):
    """(bt_strategy * or None, owned)."""
    if strategy is None:
        return None, False
    if isinstance(strategy, CStrategy):
        return strategy._c_ptr(), False
    return _bridge.strategy_handle(strategy, BaseStrategy), True


def _bias_array(logit_bias):
    if not logit_bias:
        return None, 0
    items = logit_bias.items() if isinstance(logit_bias, dict) else logit_bias
    pairs = [(int(t), float(b)) for t, b in items]
    arr = (C.bt_logit_bias * len(pairs))()
    for i, (t, b) in enumerate(pairs):
        arr[i].token, arr[i].bias = t, b
    return arr, len(pairs)


class _CSampler:
    """Owns one bt_sampler *, freed when the last reference goes: the BacktrackSampler's,
    a running generation's, or a logits array a Python strategy kept past its call (that
    array is the C sampler's own buffer, handed over without a copy: freeing the sampler
    under it made reading it a use after free)."""
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr

    def __del__(self):
        ptr, self.ptr = self.ptr, None
        if ptr:
            try:
                C.bt_sampler_free(ptr)
            except Exception:  # interpreter shutdown
                pass


class BacktrackSampler:
    """BacktrackSampler(provider, strategy): the generation loop of libbacktrack.

    provider: a LlamacppProvider, or your BaseProvider subclass (any object with the
        original's provider methods). strategy: a built-in strategy, a ChainStrategy, your
        BaseStrategy subclass, or None (plain sampling).
    sampler.stats: the Stats of the last generation (None before the first one ends).
    """

    def __init__(self, provider, strategy=None):
        self.provider = provider
        self.strategy = strategy
        self.stats = None
        self._prov, self._prov_owned = None, False
        self._strat, self._strat_owned = None, False
        self._smp = None
        self._smp_key = None
        self._running = False
        self._lock = threading.Lock()  # _running, _cur and _cancelled, against cancel()
        self._cur = None         # the bt_sampler * the running generation uses
        self._handoff = None     # its _Handoff
        self._cancelled = False  # cancel() reached it
        with _bridge.calling() as ctx:
            self._prov, self._prov_owned = _provider_ptr(provider)
        ctx.reraise()
        self._strat, self._strat_owned = _strategy_ptr(strategy)

    # ---- life cycle ------------------------------------------------------------------

    def close(self):
        """Free the C objects now (also done when the sampler is garbage collected)."""
        if self._running:
            raise RuntimeError("a generation is running on this sampler")
        self._drop_sampler()
        s, self._strat = self._strat, None
        if s and self._strat_owned:
            C.bt_strategy_free(s)
        p, self._prov = self._prov, None
        if p and self._prov_owned:
            C.bt_provider_free(p)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if not getattr(self, "_running", False):
                self.close()
        except Exception:  # interpreter shutdown
            pass

    def _drop_sampler(self):
        # freed now, or when the last logits array a strategy kept is gone (_CSampler)
        self._smp, self._smp_key = None, None

    def cancel(self):
        """End the running generation at its next step (callable from any thread). Does
        nothing when no generation runs: the library would keep such a cancel for the next
        generation of its C sampler, so a late one (after the text ended) costs that C
        sampler instead (the next generation starts on a fresh one). A generation paused
        by its consumer ends too; the consumer still reads what it released before."""
        h = None
        with self._lock:
            if self._running and self._cur:
                C.bt_sampler_cancel(self._cur)
                self._cancelled = True
                h = self._handoff
        if h is not None:  # the C loop may wait for room: it sees the cancel at once
            h.unbound()

    def _resources(self):
        """id() of what one generation uses exclusively: the provider, the strategy and,
        for a ChainStrategy, its members (a C strategy's state, and a Python strategy's,
        belongs to the one generation that runs it)."""
        keys = {id(self.provider)}
        todo = [self.strategy] if self.strategy is not None else []
        while todo:
            st = todo.pop()
            if id(st) not in keys:
                keys.add(id(st))
                if isinstance(st, ChainStrategy):
                    todo.extend(st.strategies)
        return keys

    # ---- parameters --------------------------------------------------------------------

    def _sampler_for(self, max_length, max_new_tokens, temperature, top_k, top_p, min_p, seed,
                     repeat_penalty, repeat_last_n, frequency_penalty, presence_penalty,
                     logit_bias, max_steps, add_special, parse_special, cache_prompt):
        """The C sampler for these parameters (kept while they do not change)."""
        p = C.bt_sampler_default_params()
        p.temperature = 1.0 if temperature is None else float(temperature)
        p.top_k = 0 if top_k is None else int(top_k)
        p.top_p = 1.0 if top_p is None else float(top_p)
        p.min_p = 0.0 if min_p is None else float(min_p)
        if seed is None or seed < 0:
            p.seed = C.BT_SEED_RANDOM
        else:
            p.seed = int(seed)
        for name, val in (("max_new_tokens", max_new_tokens), ("max_length", max_length),
                          ("max_steps", max_steps)):
            val = 0 if val is None else int(val)
            if not -2**31 <= val < 2**31:
                raise ValueError(f"{name} must be in [0, 2**31)")
            setattr(p, name, val)
        p.add_special = bool(add_special)
        p.parse_special = bool(parse_special)
        p.cache_prompt = bool(cache_prompt)
        p.repeat_penalty = float(repeat_penalty)
        p.repeat_last_n = int(repeat_last_n)
        p.frequency_penalty = float(frequency_penalty)
        p.presence_penalty = float(presence_penalty)
        bias, n_bias = _bias_array(logit_bias)
        if bias is not None and any(math.isnan(b.bias) for b in bias):
            raise ValueError("logit_bias: a bias is NaN")
        p.n_logit_bias = n_bias
        # the values (not the struct's bytes: its padding is whatever the stack held)
        key = (tuple(getattr(p, f) for f, _ in C.bt_sampler_params._fields_ if f != "logit_bias"),
               tuple((b.token, b.bias) for b in bias) if bias is not None else ())
        p.logit_bias = bias
        if self._smp is not None and key == self._smp_key:
            return self._smp
        self._drop_sampler()
        with _bridge.calling() as ctx:
            ptr = C.bt_sampler_init(self._prov, self._strat, ctypes.byref(p))
        smp = _CSampler(ptr) if ptr else None  # owned from here, also if reraise raises
        ctx.reraise()
        if smp is None:
            raise BacktrackError(C.last_error() or "bt_sampler_init failed")
        self._smp, self._smp_key = smp, key
        return smp

    # ---- generation ----------------------------------------------------------------------

    def generate(self, prompt, max_length=None, max_new_tokens=None, temperature=1, top_k=50,
                 top_p=None, min_p=None, *, seed=None, repeat_penalty=1.0, repeat_last_n=64,
                 frequency_penalty=0.0, presence_penalty=0.0, logit_bias=None, max_steps=0,
                 add_special=True, parse_special=True, cache_prompt=True):
        """Yield the token ids of the continuation of `prompt` (a str, or a list of token
        ids) as the strategy releases them.

        As the original: max_length (prompt + continuation; None: the context),
        max_new_tokens (None: no limit; 0: nothing), temperature, top_k (None or 0: off),
        top_p, min_p. Beyond it: seed (None: random; see .stats.seed), repeat_penalty,
        repeat_last_n, frequency_penalty, presence_penalty and logit_bias ({token: bias})
        as llama.cpp's, max_steps (0: 8 per token + 64), add_special / parse_special for
        the prompt's tokenization, cache_prompt (reuse the provider's cache of the last
        generation's common prefix).

        Lazy, as the original: a consumer that stops pulling pauses the generation (the C
        loop runs at most HANDOFF_ITEMS released tokens ahead of it, then waits).
        Bad parameters raise at once; errors of the library raise BacktrackError, and an
        exception raised by a Python strategy or provider ends the generation and is
        raised here. Closing the generator early (break) stops the generation.
        """
        return self._run(prompt, False, max_length, max_new_tokens, temperature, top_k, top_p,
                         min_p, seed, repeat_penalty, repeat_last_n, frequency_penalty,
                         presence_penalty, logit_bias, max_steps, add_special, parse_special,
                         cache_prompt)

    def generate_text(self, prompt, max_length=None, max_new_tokens=None, temperature=1,
                      top_k=50, top_p=None, min_p=None, **kw):
        """As generate(), but yield the released text as str pieces: every piece is whole
        UTF-8 (a character split across tokens comes out whole; invalid bytes as U+FFFD),
        exactly the bytes the CLI prints."""
        opts = dict(seed=None, repeat_penalty=1.0, repeat_last_n=64, frequency_penalty=0.0,
                    presence_penalty=0.0, logit_bias=None, max_steps=0, add_special=True,
                    parse_special=True, cache_prompt=True)
        unknown = set(kw) - set(opts)
        if unknown:
            raise TypeError(f"generate_text() got unexpected keyword arguments {sorted(unknown)}")
        opts.update(kw)
        return self._run(prompt, True, max_length, max_new_tokens, temperature, top_k, top_p,
                         min_p, **opts)

    def _run(self, prompt, text_mode, *params, **kw):
        if self._prov is None:
            raise ValueError("the sampler is closed")
        c_provider = getattr(self.provider, "_c_provider", None)
        if callable(c_provider):
            c_provider()  # raises if that provider was closed since
        if isinstance(self.provider, CStrategy):
            raise TypeError("the provider comes first: BacktrackSampler(provider, strategy)")
        if self._strat is not None and isinstance(self.strategy, CStrategy):
            self.strategy._c_ptr()  # still ours (not taken over by a chain since)
        if self._running or self._resources() & _busy:
            raise RuntimeError(_BUSY_MSG)
        if isinstance(prompt, str):
            data = prompt.encode("utf-8")
            if not data:
                raise ValueError("the prompt is empty")
            toks = None
        else:
            data = None
            toks = [int(t) for t in prompt]
            if not toks:
                raise ValueError("the prompt is empty")
        self._sampler_for(*params, **kw)  # bad parameters raise now, not at the first token
        if params[1] is not None and int(params[1]) == 0:
            # the original stops before the first token (the library takes 0 as no limit)
            return self._nothing(kw["seed"] if "seed" in kw else params[6])

        def sampler():
            # again when the iteration starts: another call may have replaced the C sampler
            # since (other parameters), or closed this one
            if self._prov is None:
                raise ValueError("the sampler is closed")
            return self._sampler_for(*params, **kw)

        return self._stream(sampler, data, toks, text_mode)

    def _nothing(self, seed):
        """The generation of max_new_tokens=0: no token, and nothing run."""
        self.stats = Stats(0, 0, 0, 0, 0, 0, 0, 0, 0, "max_new_tokens",
                           int(seed) if seed is not None and seed >= 0 else 0, 0.0, 0.0, 0)
        return
        yield

    def _stream(self, sampler, data, toks, text_mode):
        """Run bt_generate on a worker thread; yield what its release callback hands over
        (it waits while HANDOFF_ITEMS are unread)."""
        q = _Handoff(HANDOFF_ITEMS)
        ctx = _bridge.calling()
        st = C.bt_stats()
        res = {}

        def on_release(user, tok, text, n):
            if ctx.stopping:
                return 1
            if text_mode:
                if n and not q.put(ctypes.string_at(text, n).decode("utf-8", "replace")):
                    return 1
            elif tok >= 0 and not q.put(tok):
                return 1
            return 0

        cb = C.RELEASE_FN(on_release)

        def work(alive):
            # `alive` (this BacktrackSampler: its provider and strategies) and ctx (its C
            # sampler) are held by this running frame while the C loop runs: a garbage cycle
            # that holds them and the generator (a paused generation dropped with the object
            # that kept it) must not have them freed under the loop by the collector, which
            # finalizes the generator (that stops the loop) and frees them once it returned
            try:
                smp = ctx.sampler
                with ctx, _no_grad():
                    try:
                        if toks is None:
                            rc = C.bt_generate(smp, data, len(data), cb, None,
                                               ctypes.byref(st))
                        else:
                            arr = (C.bt_token * len(toks))(*toks)
                            rc = C.bt_generate_tokens(smp, arr, len(toks), cb, None,
                                                      ctypes.byref(st))
                    finally:
                        # returned: no cancel for it any more (from here the collector may
                        # free that C sampler in the same pass as the generator)
                        ctx.sampler = None
                    res["rc"] = rc
                    res["err"] = C.last_error() if rc else ""
            except BaseException as e:  # never lose it
                res["exc"] = e
            finally:
                q.finish()
                end = res.pop("end", None)  # see _consume: finalized on this thread
                if end is not None:
                    end()

        return self._consume(q, ctx, st, res, work, sampler)

    def _consume(self, q, ctx, st, res, work, sampler):
        # a generator of its own, so that generate() checks its arguments at once
        # the callbacks run on that thread: with the caller's context variables
        t = threading.Thread(target=contextvars.copy_context().run, args=(work, self),
                             name="backtrack-generate", daemon=True)
        keys = self._resources()
        with _busy_lock:  # claim the provider and the strategies (another generator may
            if self._running or keys & _busy:  # have started first, on any thread)
                raise RuntimeError(_BUSY_MSG)
            _busy.update(keys)
        try:
            ctx.owner = sampler()  # the generation's reference to its C sampler
            ctx.sampler = ctx.owner.ptr
        except BaseException:
            with _busy_lock:
                _busy.difference_update(keys)
            raise
        with self._lock:
            self._running, self._cur, self._cancelled = True, ctx.sampler, False
            self._handoff = q

        def halt():
            """The consumer is gone: end the C loop at its next step, or at once if it
            waits for room in the hand-off (nothing to do once it has returned)."""
            ctx.stopping = True
            ptr = ctx.sampler
            if ptr:
                C.bt_sampler_cancel(ptr)
            q.close()

        def stop():
            """halt() and wait for the generating thread (at exit)."""
            halt()
            if t.ident is not None and t is not threading.current_thread():
                t.join()
        if hasattr(self.provider, "_busy"):
            self.provider._busy = True
        finished = False
        try:
            with _busy_lock:
                _running[id(stop)] = stop
            t.start()
            while True:
                item = q.get()
                if item is _DONE:
                    finished = True
                    break
                yield item
        finally:
            def end():
                with self._lock:
                    self._running, self._cur, self._handoff = False, None, None
                    cancelled, self._cancelled = self._cancelled, False
                with _busy_lock:
                    _busy.difference_update(keys)
                    _running.pop(id(stop), None)
                if hasattr(self.provider, "_busy"):
                    self.provider._busy = False
                self.stats = Stats.from_c(st)
                if not finished or cancelled or ctx.exc is not None or "exc" in res:
                    # a cancel may still be pending on that C sampler (one that landed
                    # after its loop ended is kept for its next generation): start from a
                    # fresh one
                    self._drop_sampler()

            if not finished:  # the caller stopped early: end the generation, wait for it
                halt()
            if t is threading.current_thread():
                # closed by the cyclic collector inside a callback of this very generation:
                # the C loop is still on this thread's stack, so end() runs when it returns
                res["end"] = end
            else:
                again = None
                while t.ident is not None and t.is_alive():
                    try:
                        t.join()
                    except KeyboardInterrupt as e:  # Ctrl-C again: the loop is stopping
                        again = e                   # already; wait for it all the same
                        halt()
                end()
                if again is not None:
                    raise again
        if "exc" in res:
            raise res["exc"]
        ctx.reraise()
        if res.get("rc"):
            raise BacktrackError(res["err"] or "generation failed", res["rc"])
