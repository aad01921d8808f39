"""Adapters: the database, Salesforce, SimZ and the other outside parts.

Before any adapter imports simple-salesforce, :func:`lean_imports.defer`
keeps the parts of it syncd never runs (its SOAP metadata client, PyJWT) from
loading at import (see :mod:`syncd.adapters.lean_imports`).
"""

from syncd.adapters import lean_imports

lean_imports.defer()
