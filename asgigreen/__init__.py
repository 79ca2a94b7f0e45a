"""asgigreen: asgiref's sync/async bridges, also for gevent-monkeypatched processes.

Django, Flask and Channels import ``asgiref``; call :func:`install_as_asgiref`
first (at the very top of ``manage.py``, ``wsgi.py``, ``asgi.py`` or the
gunicorn config) and they get asgigreen instead, unchanged.
"""

from ._alias import AsgirefAlreadyImported, install_as_asgiref
from ._patching import PatchOrderError, patch_all
from .realthread import in_real_thread, run_in_real_thread

__all__ = [
    "AsgirefAlreadyImported",
    "PatchOrderError",
    "__version__",
    "in_real_thread",
    "install_as_asgiref",
    "patch_all",
    "run_in_real_thread",
]

__version__ = "0.1.0"
