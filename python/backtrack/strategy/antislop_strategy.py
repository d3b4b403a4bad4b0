"""AntiSlopStrategy: ban phrases (and regular expressions) without leaving them behind."""
import ctypes
from collections import namedtuple

from .. import _capi as C
from ..errors import BacktrackError, check, check_ptr
from ._c_strategy import CStrategy, strs

AntiSlopStats = namedtuple("AntiSlopStats",
                           "matches hard_bans soft_bans rewound_further let_through")


def _phrases(slops):
    """(phrase, adjustment) pairs from a list of phrases (hard bans), of [phrase, adjustment]
    pairs, or a dict {phrase: adjustment} (0: hard ban; in (0, 1): probability factor)."""
    if slops is None:
        return []
    if isinstance(slops, (str, bytes)):
        slops = [slops]
    items = slops.items() if isinstance(slops, dict) else slops
    out = []
    for it in items:
        if isinstance(it, (str, bytes)):
            out.append((it, 0.0))
        else:
            phrase, adj = it
            out.append((phrase, float(adj)))
    return [(p.encode("utf-8") if isinstance(p, str) else bytes(p), a) for p, a in out]


class AntiSlopStrategy(CStrategy):
    """The original's AntiSlopStrategy, in C: when a banned phrase appears in the text it
    rewinds to the token holding the phrase's first byte and bans that token there.

    provider: the provider (kept for the original's signature; matching is on the text).
    slops: phrases to ban: a list of strings (hard bans), of (phrase, adjustment) pairs or
        a dict {phrase: adjustment} (adjustment in (0, 1): a soft ban multiplies the
        probability of the phrase's first token by it; 0: hard ban).
    keep_index_buffer, with_variants, skip_tokens: as the original (with_variants: Unicode
        case-insensitive matching).
    Beyond the original: whole_word (no match inside a longer word), regexes (PCRE2
    patterns, hard bans), slop_files / regex_files (the CLI's --slop-file and
    --slop-regex-file formats), slop_hard (files' adjustments ignored: all hard bans),
    max_retries (20 bans at one position before rewinding one token further),
    max_retries_total (1000). The keywords are the names of the library's strategy
    catalog (bt_strategy_info), as the server's JSON fields.
    """

    def __init__(self, provider=None, slops=None, keep_index_buffer=5, with_variants=True,
                 skip_tokens=0, *, whole_word=False, regexes=None, slop_files=None,
                 regex_files=None, slop_hard=False, max_retries=None,
                 max_retries_total=None):
        self.provider = provider
        self.slops = slops
        lst = C.bt_phrase_list_new()
        check_ptr(lst, "bt_phrase_list_new")
        rx_owned = []   # (char **, n) arrays from bt_regex_list_load
        try:
            for phrase, adj in _phrases(slops):
                check(C.bt_phrase_list_add(lst, phrase, len(phrase), adj))
            for path in strs(slop_files, "slop_files"):
                f = ctypes.c_void_p()
                check(C.bt_phrase_list_load(path.encode(), bool(slop_hard), ctypes.byref(f)))
                try:
                    for k in range(C.bt_phrase_list_size(f)):
                        ph = C.bt_phrase_list_phrase(f, k)
                        check(C.bt_phrase_list_add(lst, ph, len(ph),
                                                   C.bt_phrase_list_adjustment(f, k)))
                finally:
                    C.bt_phrase_list_free(f)
            patterns = []
            for path in strs(regex_files, "regex_files"):
                arr = ctypes.POINTER(ctypes.c_char_p)()
                n = ctypes.c_int32()
                check(C.bt_regex_list_load(path.encode(), ctypes.byref(arr), ctypes.byref(n)))
                rx_owned.append((arr, n.value))
                patterns += [arr[i] for i in range(n.value)]
            patterns += [r.encode("utf-8") for r in strs(regexes, "regexes")]
            rx = (ctypes.c_char_p * max(1, len(patterns)))(*patterns)
            p = C.bt_antislop_default_params()
            p.phrases = lst
            p.regexes = rx if patterns else None
            p.n_regexes = len(patterns)
            p.keep_index_buffer = keep_index_buffer
            p.with_variants = bool(with_variants)
            p.whole_word = bool(whole_word)
            p.skip_tokens = skip_tokens
            if max_retries is not None:
                p.max_retries_per_position = max_retries
            if max_retries_total is not None:
                p.max_retries_total = max_retries_total
            self._ptr = check_ptr(C.bt_antislop_strategy_init(ctypes.byref(p)),
                                  "AntiSlopStrategy")
        finally:
            C.bt_phrase_list_free(lst)
            for arr, n in rx_owned:
                C.bt_strings_free(arr, n)

    @property
    def stats(self):
        """What it did in the last (or current) generation: AntiSlopStats(matches,
        hard_bans, soft_bans, rewound_further, let_through)."""
        if not self._ptr:
            raise ValueError("AntiSlopStrategy: " + (self._dead or "no C object"))
        s = C.bt_antislop_stats()
        check(C.bt_antislop_get_stats(self._ptr, ctypes.byref(s)))
        return AntiSlopStats(s.matches, s.hard_bans, s.soft_bans, s.rewound_further,
                             s.let_through)
