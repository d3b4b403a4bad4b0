"""LlamacppProvider: a GGUF model run by llama.cpp inside libbacktrack."""
import ctypes
import os

from .. import _capi as C
from .. import _bridge
from ..errors import BacktrackError, check, check_ptr


class LlamacppProvider:
    """A GGUF model loaded by libbacktrack's llama.cpp provider (the whole loop stays in C).

    model_path_or_llm: a path, or any object with a `model_path` attribute (such as a
        llama_cpp.Llama, whose n_ctx() is then used unless n_ctx is given). The original's
        `cache` and `device` arguments are accepted and ignored: the provider keeps its own
        KV cache and logits, and offloads with n_gpu_layers.
    Options (None: the library's default): n_ctx (the model's, at most 4096), n_batch (512),
    n_threads (the CPUs available; 1 for models under 64 MiB), n_gpu_layers (0; -1: all),
    logits_window (32), verbose (False), backend_dir, rpc_servers (needs a library that has
    bt_llama_params.rpc_servers), chat_template (a llama.cpp built-in template name used by
    apply_chat_template instead of the model's own).
    """

    def __init__(self, model_path_or_llm, cache=None, device=None, *, n_ctx=None, n_batch=None,
                 n_threads=None, n_gpu_layers=None, logits_window=None, verbose=False,
                 backend_dir=None, rpc_servers=None, chat_template=None):
        self._ptr = None
        obj = model_path_or_llm
        if isinstance(obj, (str, bytes, os.PathLike)):
            path = os.fsdecode(obj)
        elif getattr(obj, "model_path", None):
            path = os.fsdecode(obj.model_path)
            if n_ctx is None and callable(getattr(obj, "n_ctx", None)):
                n_ctx = obj.n_ctx()
        else:
            raise TypeError("LlamacppProvider needs a model path or an object with a "
                            f"model_path attribute, not {type(obj).__name__}")
        self.model_path = path
        self.chat_template = chat_template
        p = C.bt_llama_default_params()
        self._keep = [os.fsencode(path)]
        p.model_path = self._keep[0]
        for name, val in (("n_ctx", n_ctx), ("n_batch", n_batch), ("n_threads", n_threads),
                          ("n_gpu_layers", n_gpu_layers), ("logits_window", logits_window)):
            if val is not None:
                setattr(p, name, int(val))
        p.verbose = bool(verbose)
        if backend_dir is not None:
            self._keep.append(os.fsencode(backend_dir))
            p.backend_dir = self._keep[-1]
        if rpc_servers is not None:
            if isinstance(rpc_servers, (list, tuple)):
                rpc_servers = ",".join(rpc_servers)
            self._keep.append(rpc_servers.encode())
            p.rpc_servers = self._keep[-1]
        self._ptr = check_ptr(C.bt_llama_provider_init(ctypes.byref(p)),
                              f"loading {path}")
        self._n_vocab = C.bt_provider_n_vocab(self._ptr)
        self._n_ctx = C.bt_provider_n_ctx(self._ptr)
        self._pieces = [None] * self._n_vocab
        self._eog = None
        self._busy = False

    # ---- life cycle ------------------------------------------------------------------

    def _c_provider(self):
        if not self._ptr:
            raise ValueError("LlamacppProvider is closed")
        return self._ptr

    def close(self):
        """Free the model now (also done when the object is garbage collected)."""
        if self._busy:
            raise RuntimeError("a generation is running on this provider")
        ptr, self._ptr = self._ptr, None
        if ptr:
            C.bt_provider_free(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr:
            try:
                C.bt_provider_free(ptr)
            except Exception:  # interpreter shutdown
                pass

    # ---- the vocabulary ----------------------------------------------------------------

    @property
    def n_vocab(self):
        return self._n_vocab

    @property
    def n_ctx(self):
        return self._n_ctx

    def get_vocab_size(self):
        return self._n_vocab

    def token_bytes(self, token_id):
        """The bytes token_id adds to the text (b"" for special tokens)."""
        t = int(token_id)
        if not 0 <= t < self._n_vocab:
            raise ValueError(f"token {t} is outside the vocabulary (0..{self._n_vocab - 1})")
        b = self._pieces[t]
        if b is None:
            ptr = ctypes.c_void_p()
            n = ctypes.c_size_t()
            check(C.bt_provider_token_text(self._c_provider(), t, ctypes.byref(ptr),
                                           ctypes.byref(n)))
            b = self._pieces[t] = ctypes.string_at(ptr, n.value) if n.value else b""
        return b

    def encode(self, text, add_special_tokens=True, parse_special=None):
        """Token ids of `text`. add_special_tokens adds BOS (as the model asks);
        parse_special (default: add_special_tokens, as the original) turns "<|...|>" text
        into special tokens."""
        if parse_special is None:
            parse_special = add_special_tokens
        b = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out = ctypes.POINTER(C.bt_token)()
        n = ctypes.c_int32()
        check(C.bt_provider_tokenize(self._c_provider(), b, len(b), bool(add_special_tokens),
                                     bool(parse_special), ctypes.byref(out), ctypes.byref(n)))
        try:
            return out[:n.value]
        finally:
            C.c_free(ctypes.cast(out, ctypes.c_void_p))

    def decode(self, tokens, errors="ignore"):
        """The text of `tokens` (an id or a list of ids). Bytes that are not valid UTF-8 on
        their own (a character split across tokens) are dropped, as the original does;
        errors="replace" shows them as U+FFFD. BacktrackSampler.generate_text streams
        exact text."""
        if isinstance(tokens, int) or hasattr(tokens, "__index__"):
            tokens = [tokens]
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors)

    def get_eog_token_ids(self):
        """Every token that ends the generation (EOS, EOT, ...), ascending."""
        if self._eog is None:
            p = self._c_provider()
            self._eog = [t for t in range(self._n_vocab) if C.bt_provider_is_eog(p, t)]
        return list(self._eog)

    def get_eos_token_id(self):
        """The first end-of-generation token (the library ends on any of
        get_eog_token_ids()); None if the model has none."""
        eog = self.get_eog_token_ids()
        return eog[0] if eog else None

    # ---- the original's provider interface, for a loop of your own --------------------

    def _iface(self):
        prov = C.bt_provider.from_address(self._c_provider())
        return prov.iface.contents, prov.ctx

    def generate(self, input_ids):
        """The next-token logits after input_ids (a copy: a numpy array, or a list without
        numpy). Only the positions after what the provider already holds are evaluated."""
        if self._busy:
            raise RuntimeError("a generation is running on this provider")
        ids = [int(t) for t in input_ids]
        if not ids:
            raise ValueError("generate() needs at least one token")
        iface, ctx = self._iface()
        if iface.held and iface.begin:
            # keep the longest common prefix of what the provider holds and ids (never
            # all of ids: the logits after ids[-1] come from an eval), evaluate the rest
            held_ptr = ctypes.POINTER(C.bt_token)()
            n_held = iface.held(ctx, ctypes.byref(held_ptr))
            held = held_ptr[:n_held] if n_held > 0 else []
            common, lim = 0, min(len(held), len(ids) - 1)
            while common < lim and held[common] == ids[common]:
                common += 1
            kept = iface.begin(ctx, common)
            if kept < 0:
                check(kept)
        else:
            C.bt_provider_reset(self._c_provider())
        seq = (C.bt_token * len(ids))(*ids)
        logits = ctypes.c_void_p()
        check(iface.eval(ctx, seq, len(ids), ctypes.byref(logits), None))
        arr = _bridge.float_array(logits.value, self._n_vocab)
        return arr.copy() if _bridge.np is not None else list(arr)

    def remove_latest_cache(self, nr):
        """Forget the last nr positions the provider holds (generate() also finds out by
        itself what it can keep)."""
        if self._busy:
            raise RuntimeError("a generation is running on this provider")
        iface, ctx = self._iface()
        if iface.held:
            held_ptr = ctypes.POINTER(C.bt_token)()
            nr = min(int(nr), iface.held(ctx, ctypes.byref(held_ptr)))
        if nr > 0:
            check(iface.rewind(ctx, int(nr)))

    def reset(self):
        """Forget the held sequence and its cache (not while a generation runs on it)."""
        if self._busy:
            raise RuntimeError("a generation is running on this provider")
        C.bt_provider_reset(self._c_provider())

    # ---- chat templates ------------------------------------------------------------------

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True,
                            template=None):
        """The prompt for `messages` ([{"role": ..., "content": ...}, ...]) with the model's
        chat template (or `template` / the provider's chat_template: a llama.cpp built-in
        name such as "chatml" or "llama3"), ending with the assistant prefix. tokenize=True
        returns token ids."""
        if not add_generation_prompt:
            raise ValueError("only add_generation_prompt=True is supported")
        msgs = list(messages)
        keep = []
        arr = (C.bt_chat_message * max(1, len(msgs)))()
        for i, m in enumerate(msgs):
            role, content = (m["role"], m["content"]) if isinstance(m, dict) else m
            keep += [role.encode("utf-8"), content.encode("utf-8")]
            arr[i].role, arr[i].content = keep[-2], keep[-1]
        tmpl = template or self.chat_template
        out = ctypes.c_void_p()
        check(C.bt_llama_chat_messages(self._c_provider(), tmpl.encode() if tmpl else None, arr,
                                       len(msgs), ctypes.byref(out)))
        try:
            text = ctypes.string_at(out).decode("utf-8")
        finally:
            C.c_free(out)
        if tokenize:
            return self.encode(text, add_special_tokens=False, parse_special=True)
        return text

    @property
    def tokenizer(self):
        """A small tokenizer object in the style of transformers' (encode, decode,
        apply_chat_template, eos_token_id, len), for code written against one."""
        return _Tokenizer(self)


class _Tokenizer:
    def __init__(self, provider):
        self.provider = provider

    def encode(self, text, add_special_tokens=True):
        return self.provider.encode(text, add_special_tokens)

    def decode(self, tokens, skip_special_tokens=False):
        # special tokens have no text in libbacktrack: they are always skipped
        return self.provider.decode(tokens)

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kw):
        return self.provider.apply_chat_template(messages, tokenize, add_generation_prompt)

    @property
    def eos_token_id(self):
        return self.provider.get_eos_token_id()

    def __len__(self):
        return self.provider.n_vocab


__all__ = ["LlamacppProvider", "BacktrackError"]
