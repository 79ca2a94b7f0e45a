"""Wrong import order: Flask before ``asgigreen.patch_all()``.

Served with ``--hub threads``, nothing has patched when this module
imports Flask, so its ``patch_all()`` raises PatchOrderError: ``patch.order``.
"""

import flask

import asgigreen

asgigreen.patch_all()

app = flask.Flask(__name__)
