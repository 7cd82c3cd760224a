"""The one exception the command line turns into a message: what the user gave cannot be used.

Modules raise their own errors (:class:`tipd.config.ConfigError`,
:class:`tipd.models.ModelError`, :class:`tipd.readers.ReaderError`, …); each is also a
:class:`UserError`, so ``tipd`` prints its message as one line and exits 2 instead of showing
a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave (a file, a folder, a setting, a name) that cannot be used; the
    message says which and why, in one line."""
