"""BaseProvider: the original's provider interface, for models run by Python."""


class BaseProvider:
    """Subclass it to drive the C loop (and the C strategies) with any model Python can
    run. The original's methods:

      encode(text, add_special_tokens=True) -> list of token ids
      decode(tokens) -> str
      generate(input_ids) -> the next-token logits after input_ids (a list of ids: the
          prompt and the continuation), as a 1-D (or 1 x n_vocab) float array: numpy,
          torch, a list, ...
      get_eos_token_id() -> an id (or a list of ids) that ends the generation
      remove_latest_cache(nr): the last nr positions of what generate() saw are gone
      reset(): a new generation starts

    and two the C loop needs:

      get_vocab_size() -> the number of logits generate() returns (or an n_vocab attribute)
      token_bytes(token_id) -> the bytes a token adds to the text; the default,
          decode([id]).encode(), is right for byte-level tokenizers; override it when
          decoding a lone token drops its leading space (SentencePiece) or its partial
          UTF-8 bytes
      n_ctx: the longest sequence (prompt + continuation), default 4096

    generate() is always given the whole sequence; the sequence only grows between calls,
    except after remove_latest_cache(nr), which drops exactly the positions to forget, and
    reset(). A provider that caches (a KV cache) can rely on it.
    """

    n_ctx = 4096

    def encode(self, text, add_special_tokens=True):
        raise NotImplementedError

    def decode(self, tokens):
        raise NotImplementedError

    def generate(self, input_ids):
        raise NotImplementedError

    def get_eos_token_id(self):
        raise NotImplementedError

    def remove_latest_cache(self, nr):
        pass

    def reset(self):
        pass

    def get_vocab_size(self):
        raise NotImplementedError(f"{type(self).__name__} must implement get_vocab_size()")

    def token_bytes(self, token_id):
        return self.decode([token_id]).encode("utf-8")
