"""controlplane.api — the Kubernetes API server subset that the real kubectl drives.

The lab embeds :class:`ApiServer` (see ``server.py``); ``python -m controlplane.api``
runs it stand-alone for tests and debugging.
"""

from controlplane.api.errors import ApiServerError, StatusError
from controlplane.api.server import ApiServer

__all__ = ["ApiServerError", "ApiServer", "StatusError"]
