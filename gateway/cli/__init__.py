"""The ``agency-gateway`` command line: ``main`` is the entry point; ``root`` holds it and the
top-level commands; each command group has its module (``agencies``, ``intake``, ``mismatches``,
``evidence``, ``privacy``, ``reconcile``, ``sftp``, ``mail``, ``users``, ``sandbox``,
``bench``); ``context`` is what they share (consoles, the async bridge, errors, ``--config``).
"""

import warnings

# asyncssh still names cryptography's deprecated DSA classes at import time. Nothing here uses
# DSA (host and client keys are Ed25519); the warning would only clutter every command's output.
warnings.filterwarnings("ignore", message="DSA is deprecated", module="asyncssh")

from gateway.cli.root import main  # noqa: E402  (after the filter: it imports asyncssh)

__all__ = ["main"]
