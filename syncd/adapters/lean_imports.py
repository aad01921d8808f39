"""simple-salesforce without the modules syncd never runs.

Importing simple-salesforce imports, whatever is called later:

* zeep and lxml, for its SOAP Metadata API client (``Salesforce.mdapi``:
  deploys of metadata), which syncd never calls;
* PyJWT, and through it ``cryptography``, for its own JWT login; syncd logs
  in by itself (:mod:`syncd.adapters.salesforce`) and signs a JWT only when a
  sync is configured for the JWT bearer flow.

Together they held about 17 MB of resident memory for the life of every
``syncd run`` and ``once`` (docs/performance.md). :func:`defer`, called by
:mod:`syncd.adapters` before anything there imports simple-salesforce,
installs two stand-ins:

* ``jwt`` as a module that imports PyJWT at the first use of one of its
  names (``import jwt`` alone does not);
* ``simple_salesforce.metadata`` as a module whose ``SfdcMetadataApi``
  imports the real module (and zeep) when it is first constructed.

What runs does not change, only when it is loaded. :func:`jwt_module` is the
way syncd's own code reaches PyJWT. Loading is done under a lock, so two
threads cannot both run a module's import. If simple-salesforce was imported
before :func:`defer` (by a test, a plugin), :func:`defer` leaves everything as
it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

_METADATA = "simple_salesforce.metadata"
_lock = threading.Lock()


def defer() -> None:
    """Install the stand-ins, once, if simple-salesforce is not loaded yet."""
    with _lock:
        if "simple_salesforce" in sys.modules or _METADATA in sys.modules:
            return
        if "jwt" not in sys.modules and importlib.util.find_spec("jwt") is not None:
            sys.modules["jwt"] = _DeferredModule("jwt", package=True)
        sys.modules[_METADATA] = _metadata_stand_in()


def jwt_module() -> ModuleType:
    """PyJWT itself, imported now if it was deferred."""
    return _real("jwt")


class _DeferredModule(ModuleType):
    """Stands for a module until one of its names is used, then imports it.

    ``__spec__`` stays ``None``: the import statement reads it, and must not
    trigger the load. ``__path__`` exists only for a package, as on the real
    module (``from module import name`` asks for it).
    """

    __deferred__ = True

    def __init__(self, name: str, *, package: bool, doc: str | None = None) -> None:
        super().__init__(name, doc)
        self.__package_stand_in = package

    def __getattr__(self, name: str) -> Any:
        # Tools that look over sys.modules probe ``__file__`` and the like:
        # that is not a use. A package's ``__path__`` is: a name or a
        # submodule is being imported from it.
        if name.startswith("__") and not (name == "__path__" and self.__package_stand_in):
            raise AttributeError(name)
        return getattr(_real(self.__name__), name)


def _metadata_stand_in() -> ModuleType:
    module = _DeferredModule(
        _METADATA, package=False, doc="Stand-in: the real module is imported on first use."
    )

    class SfdcMetadataApi:
        """Constructs the real ``SfdcMetadataApi``, importing its module first.

        ``simple_salesforce.api`` imports this name when it loads, so the
        name itself must not import anything.
        """

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return _real(_METADATA).SfdcMetadataApi(*args, **kwargs)

    module.SfdcMetadataApi = SfdcMetadataApi  # type: ignore[attr-defined]
    return module


def _real(name: str) -> ModuleType:
    """The module ``name`` itself, imported (once, under the lock) if it was deferred."""
    with _lock:
        current = sys.modules.get(name)
        if current is not None and not getattr(current, "__deferred__", False):
            return current
        sys.modules.pop(name, None)
        return importlib.import_module(name)
