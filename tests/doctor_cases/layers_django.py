"""A Django project whose settings use Channels' in-memory channel layer.

Fine with ``--workers 1`` (``layers.in-memory``, info); with ``--workers 2``
each process would get its own layer: ``layers.in-memory-workers``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "layersproject.settings")

from django.core.asgi import get_asgi_application

application = get_asgi_application()
