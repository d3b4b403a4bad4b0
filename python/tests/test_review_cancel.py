"""Review (issue 12): sampler.cancel() ends the running generation only; a cancel that
lands after the text ended (the library keeps it for the next generation of that C
sampler) never empties the next one."""
import threading

from backtrack import BacktrackSampler

PROMPT = "Once upon a time"

def test_a_cancel_after_the_generation_ended_does_not_stop_the_next_one(provider):
    """bt_sampler_cancel with no generation running stops the NEXT one on that C sampler;
    sampler.cancel() promises to end the running generation only (a watchdog that fires
    just after the text ended must not empty the next request)."""
    s = BacktrackSampler(provider)
    assert len(list(s.generate(PROMPT, max_new_tokens=10, seed=1))) == 10
    s.cancel()
    assert len(list(s.generate(PROMPT, max_new_tokens=10, seed=1))) == 10
    assert s.stats.stop_reason == "max_new_tokens"


def test_a_cancel_that_lands_as_the_generation_ends_is_not_left_pending(provider):
    """cancel() while the last tokens are being read: the worker thread has usually ended
    the C loop by then (it runs ahead of the reader), so the library keeps the cancel for
    the next generation. Whatever it stopped, the next generation runs whole."""
    s = BacktrackSampler(provider)
    for k in range(20):
        n = 3 + k % 4
        for i, _ in enumerate(s.generate(PROMPT, max_new_tokens=n, seed=k)):
            if i == n - 1 - k % 2:
                if k % 3:
                    s.cancel()
                else:
                    t = threading.Thread(target=s.cancel)
                    t.start()
                    t.join()
        assert len(list(s.generate(PROMPT, max_new_tokens=5, seed=k))) == 5
