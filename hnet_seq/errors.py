"""User-facing errors: one line that names the file, record, field or flag at fault.

Anything a user can cause (bad file, bad flag, bad config) raises :class:`UserError`; the CLI
prints its message on one line and exits with status 2, without a traceback.
"""


class UserError(Exception):
    """A mistake in the user's input; ``str(err)`` is the whole message."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so that the same cleanup runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
