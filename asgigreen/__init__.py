"""asgigreen: asgiref's sync/async bridges, also for gevent-monkeypatched processes.

Django, Flask and Channels import ``asgiref``; call :func:`install_as_asgiref`
first (at the very top of ``manage.py``, ``wsgi.py``, ``asgi.py`` or the
gunicorn config) and they get asgigreen instead, unchanged.
"""

from ._alias import AsgirefAlreadyImported, install_as_asgiref

__all__ = ["AsgirefAlreadyImported", "__version__", "install_as_asgiref"]

__version__ = "0.1.0"
