"""Errors: every failure of the C library arrives as a BacktrackError carrying its message."""


class BacktrackError(RuntimeError):
    """A call into libbacktrack failed.

    `status` is the library's status code (an int, e.g. -3) or None when the call reports
    failure by returning NULL; `status_name` its name ("BT_ERR_IO"); `message` the one-line
    reason from bt_last_error().
    """

    def __init__(self, message, status=None):
        from . import _capi
        self.message = message
        self.status = status
        self.status_name = _capi.STATUS.get(status) if status is not None else None
        super().__init__(f"{message} ({self.status_name})" if self.status_name else message)


def check(rc, what=None):
    """Raise BacktrackError for a non-zero status, with the library's message."""
    if rc != 0:
        from . import _capi
        msg = _capi.last_error() or (what or "libbacktrack call failed")
        raise BacktrackError(msg, rc)
    return rc


def check_ptr(ptr, what):
    """Raise BacktrackError if a constructor returned NULL."""
    if not ptr:
        from . import _capi
        raise BacktrackError(_capi.last_error() or f"{what} failed")
    return ptr
