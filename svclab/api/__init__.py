"""svclab.api — the Kubernetes API server subset that the real kubectl drives.

The lab embeds :class:`ApiServer` (see ``server.py``); ``python -m svclab.api``
runs it stand-alone for tests and debugging.
"""

from svclab.api.errors import ApiError, StatusError
from svclab.api.server import ApiServer

__all__ = ["ApiError", "ApiServer", "StatusError"]
