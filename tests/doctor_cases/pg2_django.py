"""A Django project on PostgreSQL through psycopg2, without psycogreen.

Nothing imports psycopg2 yet (Django does on the first query); the doctor
finds it in ``DATABASES``: ``driver.psycopg2``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pg2project.settings")

from django.core.asgi import get_asgi_application

application = get_asgi_application()
