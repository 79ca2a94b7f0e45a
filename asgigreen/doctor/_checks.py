"""The checks of the process as a whole: loading, patching, the hub, asgiref, layers.

Each check takes the :class:`~asgigreen.doctor._load.Observation` and
returns its findings; none of them changes the process.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable

from .. import _alias, _patching
from ..serve import ServeError
from . import _django
from ._finding import Finding
from ._load import Observation, gevent_patched
from ._versions import asyncio_wakeup_trap

__all__ = ["CHECKS"]

_PATCH_FIRST = (
    "Let asgigreen serve patch first (--hub gevent, the default): it patches before "
    "importing the application. Elsewhere make 'import asgigreen; asgigreen.patch_all()' "
    "the first lines of the entry point (manage.py, wsgi.py, asgi.py), or use "
    "'gunicorn -k asgigreen.gunicorn.GeventWorker' without --preload."
)


def _first_paragraph(exc: BaseException) -> tuple[str, str]:
    """An error's message split into what happened and the advice after it."""
    text = str(exc).strip() or type(exc).__name__
    head, _, rest = text.partition("\n\n")
    return head, rest.strip()


def check_loading(observation: Observation) -> list[Finding]:
    options = observation.options
    prepare, load = observation.prepare_error, observation.load_error
    if prepare is not None:
        head, advice = _first_paragraph(prepare)
        return [
            Finding(
                "serve.prepare",
                "error",
                f"asgigreen serve --hub {options.hub} cannot prepare this process",
                f"{type(prepare).__name__}: {head}",
                advice or "See the findings below for the cause.",
            )
        ]
    if options.target is None:
        return [
            Finding(
                "serve.prepare",
                "ok",
                f"asgigreen serve --hub {options.hub} prepares this process",
                "No MODULE:APP given: the application was not loaded.",
            )
        ]
    if isinstance(load, _patching.PatchOrderError):
        head, advice = _first_paragraph(load)
        if options.hub == "threads":
            # serve --hub threads imported the bridges (threads hub) before the
            # module, which then wants gevent: the hub option is what is wrong.
            advice = (
                "The application patches with gevent itself: serve it with --hub gevent "
                "(the default), or drop the patching from it to stay on OS threads.\n" + advice
            )
        return [
            Finding(
                "patch.order",
                "error",
                "the application calls asgigreen.patch_all() too late",
                head,
                advice,
            )
        ]
    if isinstance(load, ServeError):
        return [
            Finding(
                "app.load",
                "error",
                f"{options.target} cannot be loaded",
                str(load),
                "Check MODULE:APP, --app-dir (the directory the module is imported from) and "
                "--factory.",
            )
        ]
    if load is not None:
        patching = _raised_while_patching(load)
        if patching:
            return [
                Finding(
                    "app.load",
                    "error",
                    f"importing {options.target} failed while gevent patched, late",
                    f"{type(load).__name__}: {load}\nRaised inside gevent's patching, called at "
                    f"{patching}: gevent looks at every object already made (for locks to "
                    "replace), and touching some (Django's lazy settings) runs their code.",
                    _PATCH_FIRST,
                )
            ]
        return [
            Finding(
                "app.load",
                "error",
                f"importing {options.target} failed",
                f"{type(load).__name__}: {load}",
                "Fix the error above; run the import alone to see its traceback: "
                f"python -c 'import {options.target.partition(':')[0]}'.",
            )
        ]
    return [Finding("app.load", "ok", "the application loads", observation.description)]


def _raised_while_patching(error: BaseException) -> str:
    """Where the code that called gevent's patching is, if ``error`` came from it."""
    caller = ""
    traceback = error.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith("gevent.monkey"):
            return caller
        if not module.startswith(("asgigreen.", "importlib")) and not (
            frame.f_code.co_filename.startswith("<")
        ):
            caller = f"{os.path.relpath(frame.f_code.co_filename)}:{traceback.tb_lineno}"
        traceback = traceback.tb_next
    return ""


def check_patching(observation: Observation) -> list[Finding]:
    moment = observation.patch
    if not gevent_patched():
        if observation.options.hub == "gevent":
            return []  # serve.prepare already says why
        return [
            Finding(
                "patch.when",
                "info",
                "gevent has not patched this process",
                "--hub threads: sync code runs on OS threads, as with asgiref.",
            )
        ]
    if observation.patched_at_start or moment is None:
        return [
            Finding(
                "patch.when",
                "info",
                "gevent patched this process before asgigreen doctor started",
                "By the launcher (python -m gevent.monkey, a sitecustomize or a .pth file), so "
                "what came before the patching is not known here.",
            )
        ]
    if moment.by_serve:
        return [
            Finding(
                "patch.when",
                "ok",
                "gevent patched this process before the application was imported",
                "asgigreen serve --hub gevent patches first, then imports MODULE:APP.",
            )
        ]
    early = _mattering(observation, moment.modules)
    where = moment.where or "unknown code"
    if early:
        return [
            Finding(
                "patch.late",
                "error",
                f"gevent patched this process late, at {where}",
                f"By then these were imported, unpatched: {', '.join(early)}.",
                _PATCH_FIRST,
            )
        ]
    return [
        Finding(
            "patch.when",
            "info",
            f"gevent patched this process at {where}, while the application was imported",
            "Nothing that matters was imported before it.",
        )
    ]


# Modules that keep something for good when imported before gevent patches,
# beyond those patch_all() refuses outright (_patching's own list).
_KEEP_UNPATCHED = {
    "ssl": (
        "warning",
        "gevent patches ssl in place: modules that did 'from ssl import ...' and contexts "
        "already created keep the blocking versions (gevent's MonkeyPatchWarning)",
    ),
    "psycopg2": (
        "info",
        "harmless by itself: what counts is a wait callback set after patching "
        "(see driver.psycopg2)",
    ),
    "grpc": (
        "warning",
        "gRPC's core may already run threads of its own; call init_gevent() after patching",
    ),
    "sentry_sdk": ("warning", "its background worker thread stays a real thread with real locks"),
    "opentelemetry.sdk": ("warning", "exporter threads stay real threads with real locks"),
    "ddtrace": ("warning", "its threads and locks stay native"),
    "newrelic": ("warning", "its harvest thread and locks stay native"),
}


def _refused_early(observation: Observation) -> list[str]:
    """The modules :func:`asgigreen.patch_all` refuses to follow, as they matter here.

    Once serve has prepared the process, asgigreen.sync is serve's own import
    (its hub already chosen), not the application's.
    """
    names = list(_patching._TOO_EARLY_BEFORE_PATCHING)
    if observation.prepare_error is None:
        names.remove("asgigreen.sync")
    return names


def _mattering(observation: Observation, modules: frozenset[str]) -> list[str]:
    """The modules in ``modules`` that should have come after the patching."""
    names = [name for name in _refused_early(observation) if name in modules]
    names += [name for name in _KEEP_UNPATCHED if name in modules]
    if any(name in modules for name in _alias._foreign_modules()):
        names.append("asgiref (the real one)")
    return names


# When serve patched first, whatever came before it ran at interpreter start.
_BEFORE_SERVE = (
    "Nothing should import it before asgigreen serve patches: look in sitecustomize.py, "
    "usercustomize.py, .pth files and PYTHONSTARTUP ('python -X importtime -m asgigreen "
    "doctor ...' shows who imports what)."
)


def check_early_imports(observation: Observation) -> list[Finding]:
    moment = observation.patch
    if moment is not None:
        before, threads = moment.modules, moment.threads
    elif isinstance(observation.prepare_error, _patching.PatchOrderError):
        before, threads = observation.preloaded, ()
    else:
        return []
    if moment is not None and not moment.by_serve:
        fix = "Import it after the patching (see patch.late)."
    else:
        fix = _BEFORE_SERVE
    findings = [
        Finding(
            f"early.{name}",
            "error",
            f"{name} was imported before gevent patched",
            _patching._reason(name),
            fix,
        )
        for name in _refused_early(observation)
        if name in before
    ]
    for name, (severity, reason) in _KEEP_UNPATCHED.items():
        if name in before:
            warning = severity == "warning"
            findings.append(
                Finding(
                    f"early.{name}",
                    "warning" if warning else "info",
                    f"{name} was imported before gevent patched",
                    reason,
                    fix if warning else "",
                )
            )
    if threads:
        findings.append(
            Finding(
                "early.threads",
                "warning",
                "threads were running before gevent patched",
                f"{', '.join(threads)}: real OS threads, and the locks they share with the "
                "greenlets are real locks, which block the hub while a thread holds them.",
                "Start them after the patching: import the libraries that start them after it.",
            )
        )
    return findings


def _hub_reason(observation: Observation, name: str) -> str:
    options = observation.options
    if observation.hub_before_app is None:
        return "chosen by detection: asgigreen serve could not prepare the process"
    if observation.hub_before_app != name:
        return (
            f"asgigreen serve chose {observation.hub_before_app!r}, then the application chose "
            f"{name!r} while being imported (asgigreen.patch_all() or asgigreen.hubs.use())"
        )
    if options.hub == "gevent":
        return "asgigreen serve --hub gevent (the default) patches and selects it"
    return "asgigreen serve --hub threads selects it, without patching"


def check_hub(observation: Observation) -> list[Finding]:
    from .. import hubs

    if observation.prepare_error is not None:
        return []  # serve would stop before choosing one

    try:
        hub = hubs.get_hub()
    except hubs.HubMismatchError as exc:
        return [
            Finding(
                "hub.mismatch",
                "error",
                "gevent patched this process after asgigreen chose the threads hub",
                str(exc).partition(". ")[0] + ".",
                _PATCH_FIRST,
            )
        ]
    except (ValueError, RuntimeError) as exc:
        return [Finding("hub.choice", "error", "no hub can be chosen", str(exc))]
    patched = gevent_patched()
    reason = _hub_reason(observation, hub.name)
    findings: list[Finding] = []
    if hub.name == "threads" and patched:
        findings.append(
            Finding(
                "hub.threads-patched",
                "error",
                "the threads hub in a gevent-patched process",
                f"Hub 'threads' ({reason}), but gevent has patched threading: the bridges "
                "would take greenlets for OS threads (thread-sensitive calls do not stay on "
                "one worker, and a sync caller parks the whole hub).",
                "Serve with --hub gevent (the default) and drop ASGIGREEN_HUB=threads or "
                "asgigreen.hubs.use('threads'). For blocking C code in a patched process use "
                "real threads on the gevent hub: sync_to_async(func, real_thread=True) or "
                "ASGIGREEN_REAL_THREADS=1.",
            )
        )
    elif hub.name == "gevent" and not patched:
        findings.append(
            Finding(
                "hub.gevent-unpatched",
                "error",
                "the gevent hub in a process gevent has not patched",
                f"Hub 'gevent' ({reason}), but threading is not patched: greenlets would share "
                "one OS thread with nothing that cooperates.",
                "Patch with asgigreen.patch_all() (it selects the gevent hub), or use the "
                "threads hub.",
            )
        )
    else:
        findings.append(Finding("hub.choice", "info", f"hub {hub.name!r}", reason))
    wanted = os.environ.get("ASGIGREEN_HUB", "").strip().lower()
    if wanted and wanted != hub.name:
        findings.append(
            Finding(
                "hub.env-ignored",
                "warning",
                f"ASGIGREEN_HUB={wanted} is set, and ignored here",
                f"The hub is {hub.name!r} ({reason}). A process started another way, such as "
                "gunicorn -k gevent with only install_as_asgiref(), would follow the variable.",
                "Unset ASGIGREEN_HUB, or set it to the hub you serve with.",
            )
        )
    return findings


def _module_file(name: str) -> str:
    module = sys.modules.get(name)
    return str(getattr(module, "__file__", None) or "?")


def check_asgiref(observation: Observation) -> list[Finding]:
    real = _alias._foreign_modules()
    if real:
        package = real[0].partition(".")[0]
        return [
            Finding(
                "asgiref.real",
                "error",
                "the real asgiref is imported beside asgigreen's alias",
                f"{', '.join(real)} (from {_module_file(package)}) came before "
                "asgigreen.install_as_asgiref(): code holding them would mix asgiref's "
                "bridges with asgigreen's"
                + (
                    ", and asgiref's sync_to_async hangs in a patched process on this Python "
                    "(gevent#2213)"
                    if asyncio_wakeup_trap()
                    and (gevent_patched() or observation.options.hub == "gevent")
                    else ""
                )
                + ".",
                "Make sure nothing imports asgiref (or Django, Flask, Channels) before "
                "asgigreen: look in sitecustomize.py, .pth files, PYTHONSTARTUP and the "
                "launcher. 'python -X importtime -m asgigreen doctor ... 2>&1 | grep asgiref' "
                "shows what imports it.",
            )
        ]
    alias = sys.modules.get("asgiref")
    if alias is not None and getattr(alias, "__asgigreen_alias__", False):
        return [
            Finding(
                "asgiref.alias",
                "ok",
                "import asgiref gives asgigreen",
                f"asgigreen stands in for asgiref {_alias.ASGIREF_VERSION}.",
            )
        ]
    return []


_IN_MEMORY = ("asgigreen.layers.InMemoryChannelLayer", "channels.layers.InMemoryChannelLayer")


def _in_memory_layers() -> list[str]:
    """Where an in-memory channel layer is configured or made, in this process."""
    found = [
        f"CHANNEL_LAYERS[{alias!r}] is {backend}"
        for alias, layer in _django.setting("CHANNEL_LAYERS").items()
        if (backend := str(layer.get("BACKEND", ""))) in _IN_MEMORY
        or backend.endswith(".InMemoryChannelLayer")
    ]
    classes = tuple(
        cls
        for module in ("asgigreen.layers", "channels.layers")
        if (cls := getattr(sys.modules.get(module), "InMemoryChannelLayer", None)) is not None
    )
    if classes and not found:
        # Made directly, without Django's settings (asgigreen.layers.InMemoryChannelLayer()).
        made = {
            f"{type(obj).__module__}.{type(obj).__qualname__}"
            for obj in gc.get_objects()
            if isinstance(obj, classes)
        }
        found += [f"an instance of {name} exists" for name in sorted(made)]
    return found


def check_layers(observation: Observation) -> list[Finding]:
    found = _in_memory_layers()
    if not found:
        return []
    workers = observation.options.workers
    if workers > 1:
        return [
            Finding(
                "layers.in-memory-workers",
                "error",
                f"an in-memory channel layer with --workers {workers}",
                f"{'; '.join(found)}. Each worker process gets a layer of its own: a message "
                "sent in one process never reaches a consumer in another, and group_send "
                "reaches only the group's members in the sending process.",
                "Use a layer shared between processes: BACKEND "
                "'channels_redis.core.RedisChannelLayer' (pip install channels-redis), or "
                "serve with --workers 1. See docs/layers.rst.",
            )
        ]
    return [
        Finding(
            "layers.in-memory",
            "info",
            "an in-memory channel layer, in one process",
            f"{'; '.join(found)}: fine with --workers 1.",
            "Switch to channels_redis before serving with several workers.",
        )
    ]


#: Every process check, in report order.
CHECKS: tuple[Callable[[Observation], list[Finding]], ...] = (
    check_loading,
    check_patching,
    check_early_imports,
    check_hub,
    check_asgiref,
    check_layers,
)
