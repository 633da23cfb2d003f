"""User-facing errors: one line that names the file, record, field or flag at fault.

Anything a user can cause (bad file, bad flag, bad config) raises :class:`UserError`; the CLI
prints its message on one line and exits with status 2, without a traceback.
"""


class UserError(Exception):
    """A mistake in the user's input; ``str(err)`` is the whole message.

    ``params``: the Python parameters the message names, as ``name=value`` or a bare ``name``
    (``UserError("window=1: must be at least 2", params=("window",))``).  The library speaks
    its API; the CLI shows these names as its flags (``--window 1``, :mod:`hnet_seq.cli.main`).
    """

    def __init__(self, message: str = "", *, params: tuple[str, ...] = ()):
        super().__init__(message)
        self.params = tuple(params)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so that the same cleanup runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
