"""
_capi.py -- the C library, loaded with ctypes: where it is found, the structures of
include/backtrack.h mirrored field for field, and the prototypes of the functions used.

Nothing here is public. Every structure below mirrors the header exactly (same fields,
same order, same types); tests/test_layout.py compiles a C program that prints sizeof and
offsetof for each field and compares them with these mirrors.
"""
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
from ctypes import (CFUNCTYPE, POINTER, c_bool, c_char_p, c_double, c_float, c_int,
                    c_int32, c_int64, c_size_t, c_uint64, c_void_p)
from pathlib import Path

# ==== Finding the library =====================================================

LIB_NAMES = ("libbacktrack.so", "libbacktrack.so.1")


def _sanitized(path):
    """True if the library at `path` was built with AddressSanitizer: loading it into a
    process that did not start with the ASan runtime ends that process, so it is skipped
    (or refused with a message) unless the runtime is already there."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"libasan.so" in data


def _asan_loaded():
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def _source_root_of_package():
    """The repository this package sits in (python/backtrack inside a checkout), or None."""
    root = Path(__file__).resolve().parent.parent.parent
    if (root / "include" / "backtrack.h").is_file() and (root / "CMakeLists.txt").is_file():
        return root
    return None


def _recorded_source_root():
    """The repository the installed package was built from (written into the wheel by
    python/_backend), or None."""
    try:
        from . import _build_info  # generated at build time; absent in a source checkout
    except ImportError:
        return None
    root = getattr(_build_info, "SOURCE_DIR", None)
    return Path(root) if root and Path(root, "include", "backtrack.h").is_file() else None


def _build_dir_libs(root):
    """Libraries in the repository's CMake build directories: build/ first, then the
    other build*/ folders, newest library first; sanitizer and fuzzer builds skipped."""
    found = []
    for d in sorted(root.glob("build*")):
        cache = d / "CMakeCache.txt"
        if not cache.is_file():
            continue
        text = cache.read_text(errors="replace")
        if "BT_SANITIZE:BOOL=ON" in text or "BT_FUZZ:BOOL=ON" in text:
            continue
        for name in LIB_NAMES:
            lib = d / name
            if lib.exists():
                found.append(lib)
                break
    found.sort(key=lambda p: (p.parent.name != "build", -p.stat().st_mtime))
    return found


def _installed_libs():
    """Libraries installed by `cmake --install`: pkg-config's libdir for backtrack.pc,
    the dynamic loader's cache (ldconfig), then the usual prefixes."""
    out = []
    if shutil.which("pkg-config"):
        try:
            libdir = subprocess.run(["pkg-config", "--variable=libdir", "backtrack"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            libdir = ""
        if libdir:
            out += [Path(libdir) / n for n in LIB_NAMES]
    name = ctypes.util.find_library("backtrack")
    if name:
        out.append(Path(name))  # a soname: the loader resolves it
    for prefix in ("/usr/local/lib", "/usr/local/lib64", "/usr/lib64", "/usr/lib"):
        out += [Path(prefix) / n for n in LIB_NAMES]
    return out


def _search():
    """Where to look, in order, lazily (the first library that loads ends the search)."""
    here = _source_root_of_package()
    if here:
        yield from _build_dir_libs(here)
    yield from _installed_libs()
    rec = _recorded_source_root()
    if rec and rec != here:
        yield from _build_dir_libs(rec)


def _candidates():
    """BACKTRACK_LIB wins and is never second-guessed. A package imported from a source
    checkout prefers that checkout's builds; an installed package prefers an installed
    library, then the builds of the tree it was built from."""
    env = os.environ.get("BACKTRACK_LIB")
    if env:
        p = Path(env)
        return [p / LIB_NAMES[0]] if p.is_dir() else [p], True
    return _search(), False


def load():
    """Load libbacktrack; ImportError with everything tried when it cannot be found."""
    cands, explicit = _candidates()
    tried = []
    for path in cands:
        is_file = path.is_absolute()
        if is_file and not path.exists():
            tried.append(f"{path} (missing)")
            continue
        if is_file and _sanitized(path) and not _asan_loaded():
            msg = (f"{path} is built with AddressSanitizer; start Python with its runtime "
                   f"preloaded (LD_PRELOAD=$(gcc -print-file-name=libasan.so)) or use a plain build")
            if explicit:
                raise ImportError("backtrack: " + msg)
            tried.append(f"{path} (sanitizer build, skipped)")
            continue
        try:
            return ctypes.CDLL(str(path)), str(path)
        except OSError as e:
            if explicit:
                raise ImportError(f"backtrack: cannot load BACKTRACK_LIB={path}: {e}") from None
            tried.append(f"{path} ({e})")
    raise ImportError(
        "backtrack: libbacktrack.so not found. Build it (cmake -S . -B build && cmake --build "
        "build), install it (cmake --install build), or set BACKTRACK_LIB to its path. Tried:\n  "
        + "\n  ".join(tried or ["nothing"]))


lib, lib_path = load()

# ==== Structures (include/backtrack.h) ==========================================

bt_token = c_int32
BT_SEED_RANDOM = 2**64 - 1
BT_GUIDE_GO_BACK = -1
BT_GUIDE_STOP = -2

STATUS = {0: "BT_OK", -1: "BT_ERR_INVALID_ARG", -2: "BT_ERR_NOMEM", -3: "BT_ERR_IO",
          -4: "BT_ERR_MODEL", -5: "BT_ERR_PROVIDER", -6: "BT_ERR_CONTEXT_FULL",
          -7: "BT_ERR_UTF8", -8: "BT_ERR_STRATEGY", -9: "BT_ERR_UNSUPPORTED",
          -10: "BT_ERR_PARSE"}
BT_OK, BT_ERR_INVALID_ARG, BT_ERR_PROVIDER, BT_ERR_STRATEGY = 0, -1, -5, -8
BT_STOP_CALLER = 5


class bt_candidate(ctypes.Structure):
    _fields_ = [("id", bt_token), ("logit", c_float), ("p", c_float)]


class bt_candidates(ctypes.Structure):
    _fields_ = [("data", POINTER(bt_candidate)), ("n", c_int32), ("n_sorted", c_int32),
                ("n_vocab", c_int32), ("pos_", POINTER(c_int32)), ("indexed_", c_int32)]


class bt_eval_info(ctypes.Structure):
    _fields_ = [("n_evaluated", c_int32), ("first_pos", c_int32)]


# provider vtable slots (ctx is the void* given to bt_provider_init)
P_N_VOCAB = CFUNCTYPE(c_int32, c_void_p)
P_N_CTX = CFUNCTYPE(c_int32, c_void_p)
P_TOKENIZE = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t, c_bool, c_bool, POINTER(bt_token),
                       c_int32, POINTER(c_int32))
P_TOKEN_TEXT = CFUNCTYPE(c_int, c_void_p, bt_token, POINTER(c_void_p), POINTER(c_size_t))
P_IS_EOG = CFUNCTYPE(c_bool, c_void_p, bt_token)
P_EVAL = CFUNCTYPE(c_int, c_void_p, POINTER(bt_token), c_int32, POINTER(c_void_p),
                   POINTER(bt_eval_info))
P_REWIND = CFUNCTYPE(c_int, c_void_p, c_int32)
P_RESET = CFUNCTYPE(None, c_void_p)
P_FREE = CFUNCTYPE(None, c_void_p)
P_HELD = CFUNCTYPE(c_int32, c_void_p, POINTER(POINTER(bt_token)))
P_BEGIN = CFUNCTYPE(c_int32, c_void_p, c_int32)
P_END = CFUNCTYPE(None, c_void_p)


class bt_provider_i(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("n_vocab", P_N_VOCAB), ("n_ctx", P_N_CTX),
                ("tokenize", P_TOKENIZE), ("token_text", P_TOKEN_TEXT), ("is_eog", P_IS_EOG),
                ("eval", P_EVAL), ("rewind", P_REWIND), ("reset", P_RESET), ("free", P_FREE),
                ("held", P_HELD), ("begin", P_BEGIN), ("end", P_END)]


class bt_provider(ctypes.Structure):
    _fields_ = [("iface", POINTER(bt_provider_i)), ("ctx", c_void_p), ("serial_", c_uint64), ("max_token_len_", c_size_t)]


class bt_view(ctypes.Structure):
    # fields may be appended by later versions: only ever read through a pointer
    _fields_ = [("tokens", POINTER(bt_token)), ("n_tokens", c_int32),
                ("prompt", POINTER(bt_token)), ("n_prompt", c_int32),
                ("n_released", c_int32), ("max_tokens", c_int32), ("n_vocab", c_int32),
                ("provider", c_void_p), ("at_end", c_bool)]


# strategy vtable slots (the first argument is the bt_strategy *)
S_BEGIN = CFUNCTYPE(c_int, c_void_p, POINTER(bt_view))
S_ON_LOGITS = CFUNCTYPE(None, c_void_p, POINTER(bt_view), c_void_p)
S_ON_PROBS = CFUNCTYPE(None, c_void_p, POINTER(bt_view), POINTER(bt_candidates))
S_ON_NEXT_TOKEN = CFUNCTYPE(None, c_void_p, POINTER(bt_view), POINTER(bt_candidates))
S_BACKTRACK = CFUNCTYPE(c_int32, c_void_p, POINTER(bt_view))
S_ON_REWIND = CFUNCTYPE(None, c_void_p, POINTER(bt_view), c_int32)
S_KEEP_INDEX = CFUNCTYPE(c_int32, c_void_p, POINTER(bt_view))
S_RESET = CFUNCTYPE(None, c_void_p)
S_FREE = CFUNCTYPE(None, c_void_p)


class bt_strategy_i(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("begin", S_BEGIN), ("on_logits", S_ON_LOGITS),
                ("on_probs", S_ON_PROBS), ("on_next_token", S_ON_NEXT_TOKEN),
                ("backtrack", S_BACKTRACK), ("on_rewind", S_ON_REWIND),
                ("keep_index", S_KEEP_INDEX), ("reset", S_RESET), ("free", S_FREE)]


class bt_strategy(ctypes.Structure):
    _fields_ = [("iface", POINTER(bt_strategy_i)), ("ctx", c_void_p), ("ext_", c_void_p)]


class bt_logit_bias(ctypes.Structure):
    _fields_ = [("token", bt_token), ("bias", c_float)]


class bt_sampler_params(ctypes.Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int32), ("top_p", c_float),
                ("min_p", c_float), ("seed", c_uint64), ("max_new_tokens", c_int32),
                ("max_length", c_int32), ("max_steps", c_int64), ("add_special", c_bool),
                ("parse_special", c_bool), ("cache_prompt", c_bool),
                ("repeat_penalty", c_float), ("repeat_last_n", c_int32),
                ("frequency_penalty", c_float), ("presence_penalty", c_float),
                ("logit_bias", POINTER(bt_logit_bias)), ("n_logit_bias", c_int32)]


class bt_stats(ctypes.Structure):
    _fields_ = [("n_prompt", c_int32), ("n_released", c_int64), ("n_discarded", c_int64),
                ("n_rewinds", c_int64), ("n_steps", c_int64), ("n_evaluated", c_int64),
                ("n_eval_calls", c_int64), ("n_prompt_reevaluated", c_int64),
                ("n_dead_ends", c_int64), ("stop_reason", c_int), ("seed", c_uint64),
                ("t_prompt_ms", c_double), ("t_total_ms", c_double),
                ("n_prompt_cached", c_int32)]


RELEASE_FN = CFUNCTYPE(c_int, c_void_p, bt_token, c_void_p, c_size_t)
LOG_FN = CFUNCTYPE(None, c_void_p, c_int, c_char_p)


class bt_llama_params(ctypes.Structure):
    # rpc_servers is the newest field (NULL by default). It is passed by pointer only, so a
    # library built before it existed simply never reads it; _pad_ leaves room for fields
    # appended later, which bt_llama_default_params() fills (ctypes passes them through).
    _fields_ = [("model_path", c_char_p), ("n_ctx", c_int32), ("n_batch", c_int32),
                ("n_threads", c_int32), ("n_gpu_layers", c_int32), ("logits_window", c_int32),
                ("verbose", c_bool), ("backend_dir", c_char_p), ("rpc_servers", c_char_p),
                ("_pad_", c_uint64 * 8)]


LLAMA_PARAMS_MIRRORED = [f for f, _ in bt_llama_params._fields_ if f != "_pad_"]


class bt_chat_message(ctypes.Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


EMIT_FN = CFUNCTYPE(None, c_void_p, c_char_p)


class bt_debug_params(ctypes.Structure):
    _fields_ = [("emit", EMIT_FN), ("user", c_void_p)]


class bt_antislop_params(ctypes.Structure):
    _fields_ = [("phrases", c_void_p), ("regexes", POINTER(c_char_p)), ("n_regexes", c_int32),
                ("keep_index_buffer", c_int32), ("with_variants", c_bool),
                ("whole_word", c_bool), ("skip_tokens", c_int32),
                ("max_retries_per_position", c_int32), ("max_retries_total", c_int32)]


class bt_antislop_stats(ctypes.Structure):
    _fields_ = [("matches", c_int64), ("hard_bans", c_int64), ("soft_bans", c_int64),
                ("rewound_further", c_int64), ("let_through", c_int64)]


class bt_replace_params(ctypes.Structure):
    _fields_ = [("find", POINTER(c_char_p)), ("n_find", c_int32), ("replace", c_char_p),
                ("max_replacements", c_int32), ("max_new_tokens_for_replace", c_int32),
                ("skip_tokens", c_int32), ("max_prob", c_float)]


class bt_creative_writing_params(ctypes.Structure):
    _fields_ = [("top_p_flat", c_float), ("top_k_threshold_flat", c_int32),
                ("eos_penalty", c_float)]


class bt_adaptive_temperature_params(ctypes.Structure):
    _fields_ = [("coeffs", c_float * 5)]


class bt_guidance_menu(ctypes.Structure):
    _fields_ = [("text", c_void_p), ("text_len", c_size_t), ("tokens", POINTER(bt_token)),
                ("probs", POINTER(c_float)), ("labels", POINTER(c_char_p)), ("n", c_int32),
                ("can_go_back", c_bool)]


GUIDANCE_FN = CFUNCTYPE(c_int, c_void_p, POINTER(bt_guidance_menu))


class bt_human_guidance_params(ctypes.Structure):
    _fields_ = [("top_k", c_int32), ("min_autopass", c_float), ("choose", GUIDANCE_FN),
                ("user", c_void_p)]


SCRIPTED_LOGITS_FN = CFUNCTYPE(None, c_void_p, POINTER(bt_token), c_int32, POINTER(c_float), c_int32)


class bt_scripted_params(ctypes.Structure):
    _fields_ = [("n_vocab", c_int32), ("tokens", POINTER(c_char_p)), ("eos", bt_token),
                ("n_ctx", c_int32), ("logits", SCRIPTED_LOGITS_FN), ("user", c_void_p)]


# every mirror, for the layout test
STRUCTS = [bt_candidate, bt_candidates, bt_eval_info, bt_provider_i, bt_provider, bt_view,
           bt_strategy_i, bt_strategy, bt_logit_bias, bt_sampler_params, bt_stats,
           bt_llama_params, bt_chat_message, bt_debug_params, bt_antislop_params,
           bt_antislop_stats, bt_replace_params, bt_creative_writing_params,
           bt_adaptive_temperature_params, bt_guidance_menu, bt_human_guidance_params,
           bt_scripted_params]

# ==== Prototypes ================================================================


def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


bt_status_name = _proto("bt_status_name", c_char_p, c_int)
bt_last_error = _proto("bt_last_error", c_char_p)
bt_log_set = _proto("bt_log_set", None, LOG_FN, c_void_p)
bt_stop_reason_name = _proto("bt_stop_reason_name", c_char_p, c_int)

bt_candidates_get_p = _proto("bt_candidates_get_p", c_float, POINTER(bt_candidates), bt_token)
bt_candidates_set_p = _proto("bt_candidates_set_p", c_int, POINTER(bt_candidates), bt_token,
                             c_float)
bt_candidates_sort_top = _proto("bt_candidates_sort_top", c_int32, POINTER(bt_candidates),
                                c_int32)

bt_provider_init = _proto("bt_provider_init", c_void_p, POINTER(bt_provider_i), c_void_p)
bt_provider_free = _proto("bt_provider_free", None, c_void_p)
bt_provider_n_vocab = _proto("bt_provider_n_vocab", c_int32, c_void_p)
bt_provider_n_ctx = _proto("bt_provider_n_ctx", c_int32, c_void_p)
bt_provider_is_eog = _proto("bt_provider_is_eog", c_bool, c_void_p, bt_token)
bt_provider_token_text = _proto("bt_provider_token_text", c_int, c_void_p, bt_token,
                                POINTER(c_void_p), POINTER(c_size_t))
bt_provider_reset = _proto("bt_provider_reset", None, c_void_p)
bt_provider_tokenize = _proto("bt_provider_tokenize", c_int, c_void_p, c_char_p, c_size_t,
                              c_bool, c_bool, POINTER(POINTER(bt_token)), POINTER(c_int32))

bt_strategy_init = _proto("bt_strategy_init", c_void_p, POINTER(bt_strategy_i), c_void_p)
bt_strategy_free = _proto("bt_strategy_free", None, c_void_p)

bt_sampler_default_params = _proto("bt_sampler_default_params", bt_sampler_params)
bt_sampler_init = _proto("bt_sampler_init", c_void_p, c_void_p, c_void_p,
                         POINTER(bt_sampler_params))
bt_sampler_free = _proto("bt_sampler_free", None, c_void_p)
bt_sampler_cancel = _proto("bt_sampler_cancel", None, c_void_p)
bt_generate = _proto("bt_generate", c_int, c_void_p, c_char_p, c_size_t, RELEASE_FN, c_void_p,
                     POINTER(bt_stats))
bt_generate_tokens = _proto("bt_generate_tokens", c_int, c_void_p, POINTER(bt_token), c_int32,
                            RELEASE_FN, c_void_p, POINTER(bt_stats))

bt_llama_default_params = _proto("bt_llama_default_params", bt_llama_params)
bt_llama_provider_init = _proto("bt_llama_provider_init", c_void_p, POINTER(bt_llama_params))
bt_llama_chat_messages = _proto("bt_llama_chat_messages", c_int, c_void_p, c_char_p,
                                POINTER(bt_chat_message), c_int32, POINTER(c_void_p))

bt_scripted_default_params = _proto("bt_scripted_default_params", bt_scripted_params)
bt_scripted_provider_init = _proto("bt_scripted_provider_init", c_void_p,
                                   POINTER(bt_scripted_params))

bt_noop_strategy_init = _proto("bt_noop_strategy_init", c_void_p)
bt_debug_default_params = _proto("bt_debug_default_params", bt_debug_params)
bt_debug_strategy_init = _proto("bt_debug_strategy_init", c_void_p, POINTER(bt_debug_params))

bt_phrase_list_new = _proto("bt_phrase_list_new", c_void_p)
bt_phrase_list_free = _proto("bt_phrase_list_free", None, c_void_p)
bt_phrase_list_add = _proto("bt_phrase_list_add", c_int, c_void_p, c_char_p, c_size_t, c_float)
bt_phrase_list_load = _proto("bt_phrase_list_load", c_int, c_char_p, c_bool, POINTER(c_void_p))
bt_phrase_list_size = _proto("bt_phrase_list_size", c_int32, c_void_p)
bt_phrase_list_phrase = _proto("bt_phrase_list_phrase", c_char_p, c_void_p, c_int32)
bt_phrase_list_adjustment = _proto("bt_phrase_list_adjustment", c_float, c_void_p, c_int32)
bt_regex_list_load = _proto("bt_regex_list_load", c_int, c_char_p,
                            POINTER(POINTER(c_char_p)), POINTER(c_int32))
bt_strings_free = _proto("bt_strings_free", None, POINTER(c_char_p), c_int32)

bt_antislop_default_params = _proto("bt_antislop_default_params", bt_antislop_params)
bt_antislop_strategy_init = _proto("bt_antislop_strategy_init", c_void_p,
                                   POINTER(bt_antislop_params))
bt_antislop_get_stats = _proto("bt_antislop_get_stats", c_int, c_void_p,
                               POINTER(bt_antislop_stats))
bt_replace_default_params = _proto("bt_replace_default_params", bt_replace_params)
bt_replace_strategy_init = _proto("bt_replace_strategy_init", c_void_p,
                                  POINTER(bt_replace_params))
bt_replace_count = _proto("bt_replace_count", c_int32, c_void_p)
bt_creative_writing_default_params = _proto("bt_creative_writing_default_params",
                                            bt_creative_writing_params)
bt_creative_writing_strategy_init = _proto("bt_creative_writing_strategy_init", c_void_p,
                                           POINTER(bt_creative_writing_params))
bt_adaptive_temperature_default_params = _proto("bt_adaptive_temperature_default_params",
                                                bt_adaptive_temperature_params)
bt_adaptive_temperature_strategy_init = _proto("bt_adaptive_temperature_strategy_init", c_void_p,
                                               POINTER(bt_adaptive_temperature_params))
bt_human_guidance_default_params = _proto("bt_human_guidance_default_params",
                                          bt_human_guidance_params)
bt_human_guidance_strategy_init = _proto("bt_human_guidance_strategy_init", c_void_p,
                                         POINTER(bt_human_guidance_params))
bt_chain_strategy_init = _proto("bt_chain_strategy_init", c_void_p, POINTER(c_void_p), c_int32)

# the C library allocates with malloc; arrays it hands over are released with free()
_libc = ctypes.CDLL(None)
c_free = _libc.free
c_free.restype = None
c_free.argtypes = [c_void_p]


def last_error():
    return (bt_last_error() or b"").decode("utf-8", "replace")
