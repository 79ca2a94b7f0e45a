"""WSGI entry point. Nothing asgigreen-specific here: under gunicorn the
``asgigreen.gunicorn.GeventWorker`` worker class does the patching before
this module is imported (the control run uses plain ``-k gevent``)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workerproject.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
