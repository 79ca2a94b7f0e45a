"""manage.py, written the way a project using asgigreen would write it."""

import asgigreen

asgigreen.install_as_asgiref()  # before Django imports asgiref

import os  # noqa: E402
import sys  # noqa: E402

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
