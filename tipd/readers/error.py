"""The one error every reader raises."""

from __future__ import annotations

from tipd.errors import UserError


class ReaderError(UserError, ValueError):
    """A file that cannot be read as a scan: the message names the file and the reason."""
