#!/usr/bin/env python
"""Django's manage.py, with asgigreen.patch_all() as its first lines."""

import asgigreen

asgigreen.patch_all()  # before Django is imported

import os  # noqa: E402
import sys  # noqa: E402

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
