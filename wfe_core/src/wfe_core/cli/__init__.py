"""The ``wfe`` command line: run workers, start and inspect workflows, publish events.

The store is chosen by ``--url`` (on ``wfe`` itself or on any command) or the
``WFE_URL`` environment variable, and defaults to ``sqlite:///wfe.db``. Every command
prints tables for people and, with ``--json``, one JSON document on stdout for scripts
(``wfe worker --json`` prints one JSON object per line). Errors go to stderr with a
non-zero exit status: 2 for bad input (a bad option, URL, JSON or duration, an unknown
definition, a missing ``--app``), 1 when the command could not do its job (an unknown
workflow id, a store that cannot be opened, a workflow not in a state that allows the
action).

The ``--app`` contract
----------------------
``--app module:attr`` (or ``WFE_APP``) names the workflows of your application. The
module is imported (the current directory is on the import path) and ``attr`` (a
dotted path inside the module) must be one of:

* a :class:`~wfe_core.Workflow` instance, or a ``Workflow`` subclass (instantiated with
  no arguments);
* a list, tuple or set of those;
* a function ``register(host)`` taking one argument: it is called with the
  :class:`~wfe_core.WorkflowHost` and registers what it wants (workflows, types,
  middleware, lifecycle handlers); it may be ``async``;
* a function taking no argument that returns any of the first two forms (it may be
  ``async``).

``wfe worker`` runs a host with these registered; ``wfe start`` needs them to build
the workflow's data of the right type from ``--data``; ``wfe show``, ``wfe list`` and
``wfe suspend|resume|terminate`` use them (optionally) to read data of your own types
(the demo's types are always known). ``wfe publish`` and ``wfe purge`` never need
it. The forms are loaded by :mod:`wfe_core.app_loading`.

Commands other than ``worker`` and ``demo`` use the store as a client
(:func:`client_session`): nothing runs in the ``wfe`` process itself, the worker that
serves the store picks the work up. Data of a type the command does not know (no
``--app``) is shown as it is stored, marked "(raw: type not registered here)".

Services
--------
``worker`` and every command that writes through a host (``start``, ``publish``,
``suspend``, ``resume``, ``terminate``) take ``--lock-url``, ``--queue-url`` and
``--lifecycle-url`` (or ``WFE_LOCK_URL``, ``WFE_QUEUE_URL``, ``WFE_LIFECYCLE_URL``): give
them the same values as your workers, so that what a command queues lands on the queue
the workers read (e.g. ``--queue-url redis://host:6379/0``).

Reading
-------
``list`` and ``show`` only read: they open the store read-only where its provider
supports it (:func:`wfe_core.registry.open_store` with ``read_only=True``; SQLite does),
so they work on a read-only file and while another process holds the write lock. When
the store cannot be read that way (it does not exist yet, or its schema must first be
created or upgraded) they open it as the other commands do.

Signals
-------
``wfe worker`` stops on the first Ctrl-C or SIGTERM, waiting for running steps (exit
status 0). A second one forces the exit at once: one line on stderr, status 128 + the
signal's number (130 for Ctrl-C, 143 for SIGTERM) -- see :mod:`wfe_core.shutdown`.

Modules
-------
:mod:`~wfe_core.cli.main` (the group), one module per command or small group of
commands (``worker``, ``start``, ``events``: publish, ``query``: show and list,
``control``: suspend, resume, terminate and purge, ``demo``),
:mod:`~wfe_core.cli.session` (the one place a command opens the store),
:mod:`~wfe_core.cli.options`, :mod:`~wfe_core.cli.inputs` and
:mod:`~wfe_core.cli.output`. The library parts they use live outside the CLI
(:mod:`wfe_core.coercion`, :mod:`wfe_core.app_loading`, :mod:`wfe_core.shutdown`,
:mod:`wfe_core.client_session`) and never import it.
"""

from wfe_core.cli.app import apply_app, load_app
from wfe_core.cli.main import cli, main
from wfe_core.cli.options import DEFAULT_URL
from wfe_core.client_session import client_session
from wfe_core.coercion import coerce, jsonable, parse_duration

__all__ = [
    "DEFAULT_URL",
    "apply_app",
    "cli",
    "client_session",
    "coerce",
    "jsonable",
    "load_app",
    "main",
    "parse_duration",
]
