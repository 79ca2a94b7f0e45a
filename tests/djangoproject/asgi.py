"""ASGI entry point, written the way a project using asgigreen would write it."""

import asgigreen

asgigreen.install_as_asgiref()  # before Django imports asgiref

import os  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoproject.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
