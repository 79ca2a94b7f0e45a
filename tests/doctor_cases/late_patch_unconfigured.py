"""Wrong import order that breaks the patching itself: Django before gevent, no settings.

Served with ``--hub threads``, the module patches after importing Django's
database layer, with ``DJANGO_SETTINGS_MODULE`` unset. gevent's patching
looks at every object made so far, touches Django's lazy settings and fails
with ImproperlyConfigured: ``app.load``, naming the patching as the cause.
"""

import django.db  # noqa: F401
from gevent import monkey

monkey.patch_all()
