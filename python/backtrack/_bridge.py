"""
_bridge.py -- Python strategies and providers seen by the C loop: bt_strategy_i and
bt_provider_i vtables whose slots are ctypes callbacks into Python objects.

How errors cross the boundary: every call into the library that may call back into Python
runs inside a CallContext (`calling()`), kept per thread. A callback never lets an
exception reach C: it stores the first one in the context, asks the running sampler to
stop (bt_sampler_cancel), answers C with a neutral or error value, and every later
callback of that generation does nothing. When the C call returns, the caller re-raises
the stored exception (ctx.reraise()).

The arrays handed to Python point at the library's own buffers (no copy of the
vocabulary): numpy arrays when numpy is installed (and BACKTRACK_NO_NUMPY is not set),
ctypes arrays otherwise. They are valid only during the call.
"""
import ctypes
import inspect
import itertools
import logging
import os
import sys
import threading
import traceback
from ctypes import c_float, c_int32, c_void_p

from . import _capi as C

if os.environ.get("BACKTRACK_NO_NUMPY"):
    np = None
else:
    try:
        import numpy as np
    except ImportError:  # numpy is optional
        np = None

PTR = ctypes.sizeof(c_void_p)
if np is not None:
    CAND_DTYPE = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
    assert CAND_DTYPE.itemsize == ctypes.sizeof(C.bt_candidate)

# ==== Call contexts =============================================================

_tls = threading.local()


class CallContext:
    """Collects the first exception raised by a Python callback during one C call."""
    __slots__ = ("exc", "sampler", "owner", "stopping", "prev")

    def __init__(self, sampler=None):
        self.exc = None
        self.sampler = sampler   # the bt_sampler * to cancel, if a generation runs
        self.owner = None        # what keeps that bt_sampler alive (arrays over its buffers)
        self.stopping = False    # a callback failed: the rest of this call is a no-op
        self.prev = None

    def __enter__(self):
        self.prev = getattr(_tls, "ctx", None)
        _tls.ctx = self
        return self

    def __exit__(self, *exc_info):
        _tls.ctx = self.prev
        return False

    def fail(self, exc):
        if self.exc is None:
            self.exc = exc
        if not self.stopping:
            self.stopping = True
            if self.sampler:
                C.bt_sampler_cancel(self.sampler)

    def reraise(self):
        """Raise the stored exception, if any (its traceback shows the callback)."""
        exc, self.exc = self.exc, None
        if exc is not None:
            try:
                raise exc
            finally:
                exc = None


def calling(sampler=None):
    return CallContext(sampler)


def _fail(exc):
    ctx = getattr(_tls, "ctx", None)
    if ctx is not None:
        ctx.fail(exc)
    else:  # a callback outside any call we made: nowhere to re-raise, so say it
        print("backtrack: exception in a callback:", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def _stopping():
    ctx = getattr(_tls, "ctx", None)
    return ctx is not None and ctx.stopping


# ==== Log forwarding ==============================================================

log = logging.getLogger("backtrack")
_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}


@C.LOG_FN
def _log_cb(user, level, msg):
    try:
        log.log(_LEVELS.get(level, logging.INFO), "%s", msg.decode("utf-8", "replace"))
    except BaseException:  # never into C
        pass


def install_log():
    """The library's log goes to the `backtrack` logger (warnings show by default)."""
    C.bt_log_set(_log_cb, None)


def uninstall_log():
    C.bt_log_set(C.LOG_FN(), None)


# ==== Arrays over C memory ===========================================================


def float_array(addr, n, owner=None):
    """n floats at addr, writable, without a copy. `owner` (the object whose life holds
    that memory) is kept alive by the array and every view of it."""
    base = (c_float * n).from_address(addr)
    base._owner = owner
    if np is not None:
        return np.frombuffer(base, dtype=np.float32)
    return base


def to_floats(obj, n, what):
    """`obj` (numpy array, torch tensor, list, ctypes array, buffer) as n float32 values:
    a numpy array or a ctypes array. Raises ValueError on a size mismatch."""
    mod = type(obj).__module__ or ""
    if mod.startswith("torch") and hasattr(obj, "detach"):
        obj = obj.detach().float().cpu().numpy()
    if np is not None:
        a = np.ascontiguousarray(obj, dtype=np.float32).reshape(-1)
        if a.size != n:
            raise ValueError(f"{what} has {a.size} values; the vocabulary has {n} tokens")
        return a
    if isinstance(obj, ctypes.Array) and obj._type_ is c_float:
        if len(obj) != n:
            raise ValueError(f"{what} has {len(obj)} values; the vocabulary has {n} tokens")
        return obj
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    vals = list(obj)
    if len(vals) == 1 and isinstance(vals[0], (list, tuple)):  # shape (1, n)
        vals = list(vals[0])
    if len(vals) != n:
        raise ValueError(f"{what} has {len(vals)} values; the vocabulary has {n} tokens")
    return (c_float * n)(*vals)


def _copy_into(dst, src, n, what):
    """Write `src` (whatever on_logits returned) into the C buffer `dst`."""
    vals = to_floats(src, n, what)
    if np is not None:
        dst[:] = vals
    else:
        ctypes.memmove(dst, vals, n * 4)


# ==== Registry ======================================================================
# C holds an integer key as its ctx; the key finds the record. A record lives exactly
# as long as its C object: the free slot removes it.

_registry = {}
_keys = itertools.count(1)


def _register(rec):
    key = next(_keys)
    _registry[key] = rec
    return key


def _overridden(obj, name, base):
    """The bound method obj.name if its class defines one other than base's default."""
    fn = getattr(type(obj), name, None)
    if fn is None or (base is not None and fn is getattr(base, name, None)):
        return None
    return getattr(obj, name)


def _n_params(fn):
    try:
        return len([p for p in inspect.signature(fn).parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
    except (TypeError, ValueError):
        return 2


# ==== Python strategies ===============================================================


class _PyStrategy:
    """What the strategy callbacks need of one Python strategy object."""

    def __init__(self, obj, base):
        self.obj = obj
        self.on_logits = _overridden(obj, "on_logits", base)
        self.on_probs = _overridden(obj, "on_probs", base)
        self.on_next_token = _overridden(obj, "on_next_token", base)
        self.backtrack = _overridden(obj, "backtrack", base)
        self.on_rewind = _overridden(obj, "on_rewind", base)
        self.get_keep_index = _overridden(obj, "get_keep_index", base)
        self.reset = _overridden(obj, "reset", base)
        # the original's older on_probs(probs, continuation, filtered_logits)
        self.probs_wants_logits = self.on_probs is not None and _n_params(self.on_probs) >= 3
        self.name = type(obj).__name__.encode("utf-8", "replace")
        self.logits_key = None
        self.logits_view = None
        self.cand_key = None
        self.cand_view = None
        self.full = None    # vocabulary-sized probabilities for on_probs / on_next_token
        self.full2 = None   # vocabulary-sized filtered logits (3-argument on_probs)
        self.mark = None
        self._snap = None   # without numpy: the probabilities handed to on_probs, as bytes

    # ---- arrays --------------------------------------------------------------------

    def logits(self, addr, n, owner):
        """The sampler's logits buffer as an array that keeps `owner` (the C sampler)
        alive: a strategy may keep it past the call without reading freed memory."""
        if self.logits_key != (addr, n, id(owner)):
            self.logits_view = float_array(addr, n, owner)
            self.logits_key = (addr, n, id(owner))
        return self.logits_view

    def forget_views(self):
        """End of a generation: the record no longer keeps that C sampler alive."""
        self.logits_view = self.logits_key = None

    def candidates(self, cd):
        """A numpy structured view of the candidate array (its capacity is n_vocab)."""
        addr = ctypes.addressof(cd.data.contents)
        key = (addr, cd.n_vocab)
        if self.cand_key != key:
            raw = (ctypes.c_char * (cd.n_vocab * CAND_DTYPE.itemsize)).from_address(addr)
            self.cand_view = np.frombuffer(raw, dtype=CAND_DTYPE)
            self.cand_key = key
        return self.cand_view[:cd.n]

    def full_probs(self, cd, field="p", second=False):
        """The candidates scattered over the vocabulary (0, or -inf for logits, elsewhere):
        the original's probability tensor, in a buffer reused from step to step."""
        nv = cd.n_vocab
        attr = "full2" if second else "full"
        buf = getattr(self, attr)
        fill = float("-inf") if field == "logit" else 0.0
        if np is not None:
            if buf is None or buf.size != nv:
                buf = np.empty(nv, dtype=np.float32)
                setattr(self, attr, buf)
            buf.fill(fill)
            cand = self.candidates(cd)
            buf[cand["id"]] = cand[field]
        else:
            if buf is None or len(buf) != nv:
                buf = (c_float * nv)()
                setattr(self, attr, buf)
            if fill == 0.0:
                ctypes.memset(buf, 0, nv * 4)
            else:
                for i in range(nv):
                    buf[i] = fill
            data = cd.data
            for i in range(cd.n):
                e = data[i]
                buf[e.id] = getattr(e, field)
        return buf

    # ---- on_probs write-back ---------------------------------------------------------

    def apply_probs(self, c, cd, before, result):
        """Make the candidate list say what on_probs returned: changed probabilities of
        listed tokens are written in place (the sorted prefix is then unknown), tokens
        given a probability outside the list are appended with bt_candidates_set_p."""
        nv = cd.n_vocab
        if np is not None:
            r = result if result is before else to_floats(result, nv, "on_probs' result")
            cand = self.candidates(cd)
            ids = cand["id"]
            newp = r[ids]
            if not np.array_equal(newp, cand["p"]):
                bad = ~(newp >= 0)
                if bad.any():
                    t = int(ids[np.flatnonzero(bad)[0]])
                    raise ValueError(f"on_probs gave token {t} the probability {r[t]} (must be >= 0)")
                cand["p"] = newp
                cd.n_sorted = 0
            if np.count_nonzero(r) > np.count_nonzero(newp):  # probability outside the list
                if self.mark is None or self.mark.size != nv:
                    self.mark = np.zeros(nv, dtype=bool)
                self.mark[ids] = True
                nz = np.flatnonzero(r)
                extra = nz[~self.mark[nz]]
                self.mark[ids] = False
                for t in extra.tolist():
                    _check_set_p(c, t, float(r[t]))
            return
        # without numpy: compare with a snapshot, update what changed through set_p
        snap = self._snap
        r = result if result is before else to_floats(result, nv, "on_probs' result")
        now = bytes(r)
        if now == snap:
            return
        import array
        chunk = 4096
        for off in range(0, nv * 4, chunk):
            if now[off:off + chunk] != snap[off:off + chunk]:
                a = array.array("f", now[off:off + chunk])
                b = array.array("f", snap[off:off + chunk])
                for i, (x, y) in enumerate(zip(a, b)):
                    if x != y:
                        _check_set_p(c, off // 4 + i, x)


def _check_set_p(c, t, p):
    if not (p >= 0):
        raise ValueError(f"on_probs gave token {t} the probability {p} (must be >= 0)")
    if C.bt_candidates_set_p(c, t, p) != 0:
        raise ValueError(f"on_probs: token {t}: {C.last_error()}")


def _srec(s):
    return _registry[c_void_p.from_address(s + PTR).value]


def _continuation(vv):
    return vv.tokens[:vv.n_tokens]


@C.S_ON_LOGITS
def _s_on_logits(s, v, logits):
    if _stopping():
        return
    try:
        rec = _srec(s)
        vv = v.contents
        ctx = getattr(_tls, "ctx", None)
        arr = rec.logits(logits, vv.n_vocab, ctx.owner if ctx is not None else None)
        r = rec.on_logits(arr, _continuation(vv))
        if r is not None and r is not arr:
            _copy_into(arr, r, vv.n_vocab, "on_logits' result")
    except BaseException as e:
        _fail(e)


@C.S_ON_PROBS
def _s_on_probs(s, v, c):
    if _stopping():
        return
    try:
        rec = _srec(s)
        vv = v.contents
        cd = c.contents
        buf = rec.full_probs(cd)
        if np is None:
            rec._snap = bytes(buf)
        cont = _continuation(vv)
        if rec.probs_wants_logits:
            r = rec.on_probs(buf, cont, rec.full_probs(cd, "logit", second=True))
        else:
            r = rec.on_probs(buf, cont)
        rec.apply_probs(c, cd, buf, buf if r is None else r)
    except BaseException as e:
        _fail(e)


@C.S_ON_NEXT_TOKEN
def _s_on_next_token(s, v, c):
    if _stopping():
        return
    try:
        rec = _srec(s)
        vv = v.contents
        rec.on_next_token(_continuation(vv), rec.full_probs(c.contents))
    except BaseException as e:
        _fail(e)


@C.S_BACKTRACK
def _s_backtrack(s, v):
    if _stopping():
        return 0
    try:
        rec = _srec(s)
        cont = _continuation(v.contents)
        n0 = len(cont)
        r = rec.backtrack(cont)
        if r is None:  # popped in place (the original's ChainStrategy reads the list it passed)
            r = cont
        n = n0 - len(r)
        if n < 0:
            raise ValueError(f"{type(rec.obj).__name__}.backtrack() returned {len(r)} tokens for "
                             f"a continuation of {n0}: it can only keep a prefix of it")
        return n
    except BaseException as e:
        _fail(e)
        return 0


@C.S_ON_REWIND
def _s_on_rewind(s, v, n):
    if _stopping():
        return
    try:
        _srec(s).on_rewind(_continuation(v.contents), n)
    except BaseException as e:
        _fail(e)


@C.S_KEEP_INDEX
def _s_keep_index(s, v):
    vv = v.contents
    if _stopping():
        return vv.n_tokens
    try:
        k = _srec(s).get_keep_index()
        # the original releases the tokens before get_keep_index() - 1
        k = int(k) - 1
        return 0 if k < 0 else min(k, vv.n_tokens)
    except BaseException as e:
        _fail(e)
        return vv.n_tokens


@C.S_RESET
def _s_reset(s):
    rec = _srec(s)
    rec.forget_views()
    if rec.reset is None:
        return
    try:
        rec.reset()
    except BaseException as e:
        _fail(e)


@C.S_FREE
def _s_free(s):
    _registry.pop(c_void_p.from_address(s + PTR).value, None)


def strategy_handle(obj, base):
    """A new bt_strategy * over the Python strategy `obj` (owned by the caller: free it
    with bt_strategy_free, or give it to a chain). `base` is BaseStrategy: its methods
    count as not implemented, so their slots stay NULL and cost nothing."""
    rec = _PyStrategy(obj, base)
    iface = C.bt_strategy_i()
    iface.name = rec.name
    if rec.on_logits:
        iface.on_logits = _s_on_logits
    if rec.on_probs:
        iface.on_probs = _s_on_probs
    if rec.on_next_token:
        iface.on_next_token = _s_on_next_token
    if rec.backtrack:
        iface.backtrack = _s_backtrack
    if rec.on_rewind:
        iface.on_rewind = _s_on_rewind
    if rec.get_keep_index:
        iface.keep_index = _s_keep_index
    iface.reset = _s_reset  # always: it also lets go of the arrays over the sampler
    iface.free = _s_free
    rec.iface = iface  # C borrows it: it lives in the record
    key = _register(rec)
    ptr = C.bt_strategy_init(ctypes.byref(iface), key)
    if not ptr:
        _registry.pop(key, None)
        from .errors import BacktrackError
        raise BacktrackError(C.last_error() or "bt_strategy_init failed")
    return ptr


# ==== Python providers ================================================================


class _PyProvider:
    """What the provider callbacks need of one Python provider object."""

    def __init__(self, obj, base):
        self.obj = obj
        for name in ("encode", "generate", "get_eos_token_id"):
            if not callable(getattr(obj, name, None)):
                raise TypeError(f"{type(obj).__name__} has no {name}() method: a provider needs "
                                "encode, decode, generate and get_eos_token_id")
        self.encode = obj.encode
        self.generate = obj.generate
        self.remove_latest_cache = _overridden(obj, "remove_latest_cache", base)
        self.user_reset = _overridden(obj, "reset", base)
        tb = getattr(obj, "token_bytes", None)
        if callable(tb):
            self.token_bytes = tb
        elif callable(getattr(obj, "decode", None)):
            self.token_bytes = lambda t: obj.decode([t]).encode("utf-8")
        else:
            raise TypeError(f"{type(obj).__name__} has neither token_bytes() nor decode()")
        self.n_vocab = _int_attr(obj, ("n_vocab", "get_vocab_size"), None)
        if self.n_vocab is None or self.n_vocab <= 0:
            raise TypeError(f"{type(obj).__name__}: the vocabulary size is unknown: define "
                            "get_vocab_size() (or an n_vocab attribute) returning a positive int")
        self.n_ctx = _int_attr(obj, ("n_ctx", "get_context_size"), 4096)
        # how encode takes the flag: by keyword as the original calls it
        # (encode(prompt, add_special_tokens=True)), else second positionally, else not at all
        try:
            ps = inspect.signature(self.encode).parameters
            if "add_special_tokens" in ps or any(p.kind == p.VAR_KEYWORD for p in ps.values()):
                self.encode_special = "keyword"
            elif len([p for p in ps.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 2:
                self.encode_special = "positional"
            else:
                self.encode_special = None
        except (TypeError, ValueError):
            self.encode_special = "keyword"
        self.name = (type(obj).__name__).encode("utf-8", "replace")
        self.tok = [None] * self.n_vocab
        self.held = 0
        self.last_logits = None
        self.tok_cache = None
        self.refresh_eos()

    def refresh_eos(self):
        e = self.obj.get_eos_token_id()
        if e is None:
            self.eos = frozenset()
        elif isinstance(e, int) or (hasattr(e, "__index__") and not hasattr(e, "__len__")):
            self.eos = frozenset([int(e)])
        else:
            self.eos = frozenset(int(x) for x in e)

    def tokenize(self, text, add_special):
        if self.encode_special == "keyword":
            toks = self.encode(text, add_special_tokens=add_special)
        elif self.encode_special == "positional":
            toks = self.encode(text, add_special)
        else:
            toks = self.encode(text)
        if hasattr(toks, "tolist"):
            toks = toks.tolist()
        toks = [int(t) for t in toks]
        for t in toks:
            if not 0 <= t < self.n_vocab:
                raise ValueError(f"encode() returned token {t}, outside the vocabulary "
                                 f"(0..{self.n_vocab - 1})")
        return toks


def _int_attr(obj, names, default):
    for name in names:
        v = getattr(obj, name, None)
        if v is None:
            continue
        if callable(v):
            try:
                v = v()
            except NotImplementedError:
                continue
        return int(v)
    return default


def _prec(ctx):
    return _registry[ctx]


@C.P_N_VOCAB
def _p_n_vocab(ctx):
    return _prec(ctx).n_vocab


@C.P_N_CTX
def _p_n_ctx(ctx):
    return _prec(ctx).n_ctx


@C.P_TOKENIZE
def _p_tokenize(ctx, text, length, add_special, parse_special, out, cap, n_out):
    if _stopping():
        n_out[0] = 0
        return C.BT_ERR_PROVIDER
    try:
        rec = _prec(ctx)
        s = ctypes.string_at(text, length).decode("utf-8")
        key = (s, bool(add_special))
        if rec.tok_cache is not None and rec.tok_cache[0] == key:
            toks = rec.tok_cache[1]
        else:
            toks = rec.tokenize(s, bool(add_special))
        n_out[0] = len(toks)
        if len(toks) > cap:
            rec.tok_cache = (key, toks)  # C asks again with room for them
            return C.BT_ERR_INVALID_ARG
        rec.tok_cache = None
        if toks:
            ctypes.memmove(out, (c_int32 * len(toks))(*toks), 4 * len(toks))
        return 0
    except BaseException as e:
        _fail(e)
        n_out[0] = 0
        return C.BT_ERR_PROVIDER


_EMPTY = ctypes.create_string_buffer(1)


@C.P_TOKEN_TEXT
def _p_token_text(ctx, tid, out, length):
    try:
        rec = _prec(ctx)
        if not 0 <= tid < rec.n_vocab:
            out[0] = ctypes.addressof(_EMPTY)
            length[0] = 0
            return C.BT_ERR_INVALID_ARG
        ent = rec.tok[tid]
        if ent is None:
            b = rec.token_bytes(tid)
            if isinstance(b, str):
                b = b.encode("utf-8")
            b = bytes(b)
            ent = rec.tok[tid] = (ctypes.create_string_buffer(b, len(b)) if b else _EMPTY, len(b))
        out[0] = ctypes.addressof(ent[0])
        length[0] = ent[1]
        return 0
    except BaseException as e:
        _fail(e)
        out[0] = ctypes.addressof(_EMPTY)
        length[0] = 0
        return C.BT_ERR_PROVIDER


@C.P_IS_EOG
def _p_is_eog(ctx, tid):
    return tid in _prec(ctx).eos


@C.P_EVAL
def _p_eval(ctx, seq, n, logits, info):
    if _stopping():
        return C.BT_ERR_PROVIDER
    try:
        rec = _prec(ctx)
        if n > rec.n_ctx:
            raise ValueError(f"sequence of {n} tokens exceeds the provider's n_ctx = {rec.n_ctx}")
        out = rec.generate(seq[:n])
        arr = to_floats(out, rec.n_vocab, "generate()'s logits")
        rec.last_logits = arr  # the provider's until its next eval, rewind or reset
        logits[0] = arr.ctypes.data if np is not None else ctypes.addressof(arr)
        if info:
            info[0].n_evaluated = max(0, n - rec.held)
            info[0].first_pos = min(rec.held, n)
        rec.held = n
        return 0
    except BaseException as e:
        _fail(e)
        return C.BT_ERR_PROVIDER


@C.P_REWIND
def _p_rewind(ctx, n):
    if _stopping():
        return C.BT_ERR_PROVIDER
    try:
        rec = _prec(ctx)
        rec.held = max(0, rec.held - n)
        if rec.remove_latest_cache:
            rec.remove_latest_cache(n)
        return 0
    except BaseException as e:
        _fail(e)
        return C.BT_ERR_PROVIDER


@C.P_RESET
def _p_reset(ctx):
    try:
        rec = _prec(ctx)
        rec.held = 0
        rec.last_logits = None
        if rec.user_reset:
            rec.user_reset()
        rec.refresh_eos()
    except BaseException as e:
        _fail(e)


@C.P_FREE
def _p_free(ctx):
    _registry.pop(ctx, None)


def provider_handle(obj, base):
    """A new bt_provider * over the Python provider `obj` (owned by the caller: free it
    with bt_provider_free)."""
    rec = _PyProvider(obj, base)
    iface = C.bt_provider_i(name=rec.name, n_vocab=_p_n_vocab, n_ctx=_p_n_ctx,
                            tokenize=_p_tokenize, token_text=_p_token_text, is_eog=_p_is_eog,
                            eval=_p_eval, rewind=_p_rewind, reset=_p_reset, free=_p_free)
    rec.iface = iface
    key = _register(rec)
    ptr = C.bt_provider_init(ctypes.byref(iface), key)
    if not ptr:
        _registry.pop(key, None)
        from .errors import BacktrackError
        raise BacktrackError(C.last_error() or "bt_provider_init failed")
    return ptr
