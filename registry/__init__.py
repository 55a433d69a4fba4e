"""Cargobay: an async OCI Distribution registry.

The public face of the package is the command line (`registry.cli`) and the
application factory (`registry.app.create_app`); everything else is internal.
"""

__version__ = "0.1.0"

#: The `Server` header of every response: the name alone, since versions tell an attacker
#: which exploits to try.
SERVER = "cargobay"
