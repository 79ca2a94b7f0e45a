"""Django's settings, read only when the application has Django set up.

The doctor never configures Django itself: it reads ``django.conf.settings``
only if the application imported it and settings are (or can be) loaded,
which is what Django does on the first request anyway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["SettingsProblem", "setting", "settings"]


class SettingsProblem(Exception):
    """Django's settings could not be read; the message says why."""


def settings() -> Any | None:
    """``django.conf.settings`` if the application uses Django and it loads, else None.

    Raises :class:`SettingsProblem` if the settings module fails to import.
    """
    conf = sys.modules.get("django.conf")
    if conf is None:
        return None
    lazy = conf.settings
    if not lazy.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return None
    try:
        lazy.INSTALLED_APPS  # noqa: B018 (loads the settings module)
    except Exception as exc:
        raise SettingsProblem(f"{type(exc).__name__}: {exc}") from exc
    return lazy


def setting(name: str) -> Mapping[str, Any]:
    """A dict-valued Django setting (``DATABASES``, ``CACHES``...), empty if absent.

    Only entries that are dicts themselves are kept.
    """
    try:
        loaded = settings()
    except SettingsProblem:
        return {}
    value = getattr(loaded, name, None) if loaded is not None else None
    if not isinstance(value, Mapping):
        return {}
    return {str(key): entry for key, entry in value.items() if isinstance(entry, Mapping)}
