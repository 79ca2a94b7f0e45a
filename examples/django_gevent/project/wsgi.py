"""WSGI entry point.

Under ``gunicorn -k asgigreen.gunicorn.GeventWorker`` (gunicorn.conf.py) the
worker has already run patch_all() by the time this is imported, and the
call below does nothing. It is here so the same module also works under
``gunicorn -k gevent``, uWSGI with gevent, or gevent.pywsgi.
"""

import asgigreen

asgigreen.patch_all()

import os  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
