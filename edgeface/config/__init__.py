"""The one typed configuration of edgeface.

Sources, later ones winning: built-in defaults < TOML file (``--config`` or ``$EDGEFACE_CONFIG``) <
environment (``EDGEFACE_<SECTION>__<KEY>``, e.g. ``EDGEFACE_DETECT__MIN_SCORE=0.6``; nested sections with
one more ``__``: ``EDGEFACE_CAPTURE__FOLDER__PATH``) < command line (``--set section.key=value`` and
command flags). Everything is validated at start-up; a wrong value is reported with its key, where it
came from, and what is allowed.

Each section is a frozen dataclass declared by the package that owns it (``edgeface/vision/settings.py``,
``edgeface/gallery/settings.py``, ...; logging and device, which no single package owns, in
:mod:`.core`); every field carries its documentation, so ``edgeface config defaults`` prints a complete,
commented TOML file. The modules here:

- :mod:`.fields`: ``setting()`` and ``section()``, the only thing a settings module imports from here;
- :mod:`.schema`: :class:`Config`, assembled from the owners' sections, and the renamed sections;
- :mod:`.loader`: :func:`load_config` (layering, old names, notices);
- :mod:`.coerce`: raw values to typed ones, with the messages; :mod:`.render`: :func:`to_toml`, :func:`as_dict`.

``Config`` and the functions that need it are loaded on first use (PEP 562 ``__getattr__``): the owners'
settings modules import :mod:`.fields`, which runs this file, so this file must not import them back
while one of them is still half-imported. For the same reason, a module that importing an owner's
package runs (its ``__init__`` and what that imports) takes ``Config`` for annotations only (under
``TYPE_CHECKING``) and imports :func:`load_config` inside the function that calls it;
``tests/core/test_config_imports.py`` checks both.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .core import DeviceConfig, LoggingConfig
from .fields import section, setting

if TYPE_CHECKING:
    from .loader import ENV_CONFIG, ENV_PREFIX, load_config, log_notices
    from .render import as_dict, to_toml
    from .schema import Config

__all__ = [
    "ENV_CONFIG",
    "ENV_PREFIX",
    "Config",
    "ConfigError",
    "DeviceConfig",
    "LoggingConfig",
    "as_dict",
    "load_config",
    "log_notices",
    "section",
    "setting",
    "to_toml",
]

_LAZY = {
    "Config": "schema",
    "load_config": "loader",
    "log_notices": "loader",
    "ENV_CONFIG": "loader",
    "ENV_PREFIX": "loader",
    "to_toml": "render",
    "as_dict": "render",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
