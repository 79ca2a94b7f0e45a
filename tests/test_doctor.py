"""``asgigreen doctor``: the examples come out clean, the wrong set-ups are named with their fix.

Every check runs ``python -m asgigreen doctor`` in a fresh subprocess (the
doctor judges the process it loads the application in, so it cannot share
pytest's), against the examples under ``examples/`` and the deliberately
wrong set-ups under ``tests/doctor_cases/`` (each module's docstring says
what is wrong with it). The ``--json`` report is parsed and checked against
the documented layout; the exit status must match it.

Those subprocesses are the same whichever mode pytest runs in, so they run
once (plain run, ``threads_only``); the report logic that runs in-process
is tested in both modes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import asgigreen
from asgigreen.doctor import SCHEMA, Finding, LoadOptions, Report
from asgigreen.doctor._render import as_json, as_text

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "doctor_cases"
TIMEOUT = 60.0

pytestmark = pytest.mark.timeout(120)


def _environment(extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # What the parent run set for itself must not steer the doctor.
        if not name.startswith(("ASGIGREEN_", "GEVENT_", "PSYCOPG_"))
        and name not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")
    }
    env.update(extra or {})
    return env


def run(
    *args: str, env: dict[str, str] | None = None, launcher: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``python [launcher] -m asgigreen ARGS`` from the repository root, with a time limit."""
    command = [sys.executable, *launcher, "-m", "asgigreen", *args]
    if launcher:
        # python -m gevent.monkey --module asgigreen ...
        command = [sys.executable, *launcher, "asgigreen", *args]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=_environment(env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,  # subprocess.run kills the child when it expires
        check=False,
    )


def doctor(
    *args: str, env: dict[str, str] | None = None, launcher: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The parsed ``--json`` report, checked against the documented layout."""
    done = run("doctor", "--json", *args, env=env, launcher=launcher)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"not JSON on stdout: {done.stdout!r}\nstderr:\n{done.stderr}")
    assert set(report) == {
        "schema",
        "asgigreen",
        "target",
        "options",
        "status",
        "exit_status",
        "counts",
        "findings",
    }
    assert report["schema"] == SCHEMA
    assert report["asgigreen"] == asgigreen.__version__
    assert set(report["options"]) == {"hub", "workers", "factory", "interface", "app_dir"}
    assert done.returncode == report["exit_status"], done.stderr
    counted: dict[str, int] = dict.fromkeys(("error", "warning", "info", "ok"), 0)
    for finding in report["findings"]:
        assert set(finding) == {"id", "severity", "title", "detail", "fix", "ignored"}
        assert finding["severity"] in counted
        if not finding["ignored"]:
            counted[finding["severity"]] += 1
    assert report["counts"] == counted
    worst = "error" if counted["error"] else "warning" if counted["warning"] else "ok"
    assert report["status"] == worst
    report["stderr"] = done.stderr
    return report


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for finding in report["findings"]:
        assert finding["id"] not in found, f"{finding['id']} reported twice"
        found[finding["id"]] = finding
    return found


def problems(report: dict[str, Any]) -> list[str]:
    return [
        f"{f['severity']} {f['id']}: {f['title']} ({f['detail']})"
        for f in report["findings"]
        if f["severity"] in ("error", "warning") and not f["ignored"]
    ]


def assert_named(report: dict[str, Any], ident: str, *words: str) -> dict[str, Any]:
    """The error ``ident`` is reported with a fix, and the run failed because of it."""
    findings = by_id(report)
    assert ident in findings, f"{ident} missing; found {sorted(findings)}"
    finding = findings[ident]
    assert finding["severity"] == "error", finding
    assert finding["fix"], finding
    text = f"{finding['detail']} {finding['fix']}"
    for word in words:
        assert word in text, f"{word!r} not in {ident}: {text}"
    assert report["exit_status"] == 1
    return finding


def cases(*args: str) -> tuple[str, ...]:
    return ("--app-dir", str(CASES), *args)


# -- the command -----------------------------------------------------------------------


@pytest.mark.threads_only
def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"asgigreen {asgigreen.__version__}\n"


@pytest.mark.threads_only
def test_bad_arguments_are_refused() -> None:
    done = run("doctor", "--workers", "0", "hello:app")
    assert done.returncode == 2
    assert "--workers: must be 1 or more, not 0" in done.stderr
    report = doctor(*cases("no_such_module:app"))
    finding = assert_named(report, "app.load", "--app-dir")
    assert "no_such_module" in finding["detail"]
    report = doctor(*cases("hello"))
    assert "must be given as 'module:attribute'" in assert_named(report, "app.load")["detail"]


# -- the examples are clean --------------------------------------------------------------

EXAMPLES = {
    "django": ("--app-dir", "examples/django_gevent", "project.wsgi:application"),
    "flask": ("--app-dir", "examples/flask_gevent", "app:app"),
    "migration": ("examples.migration.app:application",),
    "stateless_server": ("--app-dir", "examples/stateless_server", "server:application"),
}


@pytest.mark.threads_only
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_is_clean(name: str, tmp_path: Path) -> None:
    report = doctor(*EXAMPLES[name], env={"EXAMPLE_DATA_DIR": str(tmp_path)})
    assert problems(report) == []
    assert report["exit_status"] == 0
    findings = by_id(report)
    for ident in ("app.load", "patch.when", "asgiref.alias"):
        assert findings[ident]["severity"] == "ok", findings[ident]
    assert findings["hub.choice"]["title"] == "hub 'gevent'"


@pytest.mark.threads_only
def test_examples_are_clean_in_the_other_modes(tmp_path: Path) -> None:
    # The Django example on PostgreSQL: psycopg 3, imported after the patching.
    report = doctor(
        *EXAMPLES["django"],
        env={"EXAMPLE_DATA_DIR": str(tmp_path), "DATABASE_HOST": "127.0.0.1"},
    )
    assert problems(report) == []
    assert by_id(report)["driver.psycopg"]["severity"] == "ok"
    report = doctor("--workers", "2", *EXAMPLES["migration"])
    assert problems(report) == []
    report = doctor("--hub", "threads", *EXAMPLES["migration"])
    assert problems(report) == []
    assert by_id(report)["hub.choice"]["title"] == "hub 'threads'"


@pytest.mark.threads_only
def test_loading_does_not_serve(tmp_path: Path) -> None:
    marker = tmp_path / "served"
    for target in (("lifespan_marker:app",), ("--factory", "lifespan_marker:create_app")):
        report = doctor(*cases(*target), env={"DOCTOR_MARKER": str(marker)})
        assert problems(report) == []
        assert "is ASGI" in by_id(report)["app.load"]["detail"]
        # What the application printed went to stderr: stdout parsed as JSON.
        assert "lifespan_marker: imported" in report["stderr"]
    assert not marker.exists()


# -- the five wrong set-ups --------------------------------------------------------------


@pytest.mark.threads_only
def test_import_order() -> None:
    # --hub threads: serve does not patch; the module patches after Django and psycopg.
    report = doctor(*cases("--hub", "threads", "late_patch:app"))
    late = assert_named(report, "patch.late", "django.db", "psycopg", "asgigreen serve patch first")
    assert "late_patch.py:" in late["title"]
    assert_named(report, "early.django.db")
    assert_named(report, "early.psycopg")
    assert_named(report, "driver.psycopg", "wait_c", "after gevent has patched")
    # The fix the doctor names: let serve patch first (its default hub).
    report = doctor(*cases("late_patch:app"))
    assert problems(report) == []
    assert by_id(report)["driver.psycopg"]["severity"] == "ok"
    # Patching after Django without settings fails inside gevent: said so.
    report = doctor(*cases("--hub", "threads", "late_patch_unconfigured:app"))
    failed = assert_named(report, "app.load", "ImproperlyConfigured", "late_patch_unconfigured.py:")
    assert failed["title"].endswith("failed while gevent patched, late")
    # asgigreen.patch_all() called after Flask: its own PatchOrderError, reported.
    report = doctor(*cases("--hub", "threads", "late_patch_all:app"))
    assert_named(report, "patch.order", "flask", "first lines", "--hub gevent")


@pytest.mark.threads_only
def test_real_asgiref_beside_the_alias() -> None:
    env = {"PYTHONPATH": str(CASES / "real_asgiref")}  # its sitecustomize imports asgiref
    report = doctor(*cases("hello:app"), env=env)
    real = assert_named(report, "asgiref.real", "asgiref.sync", "sitecustomize")
    assert "site-packages" in real["detail"]  # says which files it came from
    assert "PatchOrderError" in assert_named(report, "serve.prepare")["detail"]
    report = doctor(*cases("--hub", "threads", "hello:app"), env=env)
    assert_named(report, "asgiref.real")
    assert "AsgirefAlreadyImported" in assert_named(report, "serve.prepare")["detail"]
    assert "asgiref.real" not in by_id(doctor(*cases("hello:app")))


@pytest.mark.threads_only
def test_psycopg2_without_psycogreen() -> None:
    report = doctor(*cases("psycopg2_plain:app"))
    assert_named(report, "driver.psycopg2", "get_wait_callback() is None", "patch_psycopg()")
    # Found in Django's DATABASES before anything imported psycopg2.
    report = doctor(*cases("pg2_django:application"))
    assert_named(report, "driver.psycopg2", "DATABASES['default']")
    # With psycogreen's patch_psycopg() the finding goes away.
    report = doctor(*cases("psycopg2_green:app"))
    assert problems(report) == []
    green = by_id(report)["driver.psycopg2"]
    assert green["severity"] == "ok"
    assert "psycogreen.gevent" in green["detail"]


@pytest.mark.threads_only
def test_in_memory_layer_with_several_workers() -> None:
    report = doctor(*cases("--workers", "2", "layers_django:application"))
    finding = assert_named(
        report, "layers.in-memory-workers", "channels.layers.InMemoryChannelLayer", "channels_redis"
    )
    assert finding["title"].endswith("--workers 2")
    report = doctor(*cases("--workers", "2", "layer_direct:app"))
    assert_named(report, "layers.in-memory-workers", "asgigreen.layers.InMemoryChannelLayer")
    report = doctor(*cases("layers_django:application"))
    assert problems(report) == []
    assert by_id(report)["layers.in-memory"]["severity"] == "info"


@pytest.mark.threads_only
def test_threads_hub_forced_in_a_patched_process() -> None:
    # Patched by the launcher, ASGIGREEN_HUB=threads and serve's --hub threads.
    report = doctor(
        *cases("--hub", "threads", "hello:app"),
        env={"ASGIGREEN_HUB": "threads"},
        launcher=("-m", "gevent.monkey", "--module"),
    )
    assert_named(report, "hub.threads-patched", "--hub gevent", "real_thread=True")
    assert by_id(report)["patch.when"]["title"].endswith("before asgigreen doctor started")
    # Patched by the application itself under --hub threads.
    report = doctor(*cases("--hub", "threads", "self_patch:app"))
    assert_named(report, "hub.threads-patched")
    assert "self_patch.py:" in assert_named(report, "patch.late")["title"]


# -- the options ------------------------------------------------------------------------


@pytest.mark.threads_only
def test_warnings_strict_and_ignore() -> None:
    env = {"ASGIGREEN_HUB": "threads"}  # ignored by serve --hub gevent: a warning
    report = doctor(*cases("hello:app"), env=env)
    assert report["exit_status"] == 0
    assert by_id(report)["hub.env-ignored"]["severity"] == "warning"
    assert doctor(*cases("--strict", "hello:app"), env=env)["exit_status"] == 1
    report = doctor(*cases("--strict", "--ignore", "hub.*", "hello:app"), env=env)
    assert report["exit_status"] == 0
    assert by_id(report)["hub.env-ignored"]["ignored"] is True
    report = doctor(*cases("--ignore", "driver.psycopg2", "psycopg2_plain:app"))
    assert report["exit_status"] == 0
    assert report["status"] == "ok"


@pytest.mark.threads_only
def test_text_report() -> None:
    done = run("doctor", *cases("psycopg2_plain:app"))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "asgigreen doctor: psycopg2_plain:app, hub gevent, 1 worker process"
    first = lines.index(next(line for line in lines if line.startswith("ERROR ")))
    assert "driver.psycopg2: psycopg2 blocks every greenlet" in lines[first]
    assert any(line.strip().startswith("fix: Right after gevent patches") for line in lines)
    assert lines[-1] == "1 error, 0 warnings: error"


# -- the report, in-process (both modes) -------------------------------------------------


def _report(*findings: Finding, strict: bool = False) -> Report:
    return Report(LoadOptions("mod:app", workers=2), findings, strict=strict)


def test_exit_status_follows_the_worst_counted_finding() -> None:
    ok = Finding("app.load", "ok", "loads")
    warning = Finding("hub.env-ignored", "warning", "set and ignored", "why", "unset it")
    error = Finding("driver.psycopg2", "error", "blocks", "why", "patch_psycopg()")
    assert _report(ok).exit_status == 0
    assert _report(ok, warning).exit_status == 0
    assert _report(ok, warning, strict=True).exit_status == 1
    assert _report(ok, error).exit_status == 1
    ignored = _report(ok, error.ignore())
    assert (ignored.status, ignored.exit_status) == ("ok", 0)
    assert ignored.counts() == {"error": 0, "warning": 0, "info": 0, "ok": 1}


def test_renderings() -> None:
    error = Finding(
        "patch.order",
        "error",
        "too late",
        "these came first:\n  - flask: Flask\n  - django.db: Django's database layer",
        "Patch first:\n\n    import asgigreen\n    asgigreen.patch_all()",
    )
    report = _report(error, Finding("versions", "info", "Python"))
    document = json.loads(as_json(report, app_dir="/srv"))
    assert document["options"] == {
        "hub": "gevent",
        "workers": 2,
        "factory": False,
        "interface": "auto",
        "app_dir": "/srv",
    }
    assert document["findings"][0] == error.as_dict()
    text = as_text(report).splitlines()
    assert text[0] == "asgigreen doctor: mod:app, hub gevent, 2 worker processes"
    assert "ERROR     patch.order: too late" in text
    # The message's own list and code lines keep their lines and indentation.
    assert "            - flask: Flask" in text
    assert "              import asgigreen" in text
    assert text[-1] == "1 error, 0 warnings: error"
