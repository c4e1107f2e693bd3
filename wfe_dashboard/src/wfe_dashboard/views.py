"""The dashboard's pages and actions.

Pages: the instance list (``/``), an instance (``/instances/{id}``), the schedules
(``/schedules``) and the login form (``/login``, only with a token). Actions are POSTs
carrying the page's form secret: suspend, resume, terminate
(``/instances/{id}/{action}``) and publish an event (``/instances/{id}/publish``).
Each needs ``confirmed=1``: the page's script sets it after a confirmation dialog; a
browser without the script gets a confirmation page instead.

A request with the header ``X-Partial: 1`` gets only the part of the page that live
updates replace.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wfe_core.cli.output import undecodable_values
from wfe_core.errors import SerializationError, WfeError, WorkflowNotFound
from wfe_core.models import EventSubscription, WorkflowInstance, WorkflowStatus

from wfe_dashboard.paging import Cursor, FilterError, Filters, read_page
from wfe_dashboard.present import pointer_tree, show_value
from wfe_dashboard.security import TokenGate, cookie_value, same_secret

__all__ = [
    "ACTIONS",
    "control",
    "dashboard",
    "http_error",
    "instance_context",
    "instance_list",
    "instance_page",
    "instance_version",
    "list_context",
    "list_version",
    "login",
    "logout",
    "publish",
    "schedules",
    "version_of",
]

ACTIONS = ("suspend", "resume", "terminate")
"""The control actions, by the name used in their address."""

_DONE = {
    "suspend": "Suspended.",
    "resume": "Resumed.",
    "terminate": "Terminated (a running step sees the request within about a second).",
}
_REFUSED = {
    "suspend": "Not suspended: only a runnable instance can be suspended.",
    "resume": "Not resumed: only a suspended instance can be resumed.",
    "terminate": "Not terminated: the instance had already ended.",
}


def dashboard(request: Request) -> Any:
    """The app's shared :class:`~wfe_dashboard.app.Dashboard`."""
    return request.app.state.dashboard


def _partial(request: Request) -> bool:
    return request.headers.get("x-partial") == "1"


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    context.setdefault("now", datetime.now(UTC))
    response: Response = dashboard(request).templates.TemplateResponse(
        request, name, context, status_code=status
    )
    response.headers["cache-control"] = "no-store"
    return response


def _query(params: dict[str, str], **changes: str | None) -> str:
    """``params`` with ``changes`` (None removes a key) as a query string."""
    merged = {**params, **changes}
    kept = {k: v for k, v in merged.items() if v}
    return "?" + urlencode(kept) if kept else ""


def version_of(parts: object) -> str:
    """A short fingerprint of what a page shows (live updates compare them)."""
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16]


def list_version(rows: list[WorkflowInstance]) -> str:
    """The fingerprint of a list page: its rows' ids, statuses and revisions."""
    return version_of([(r.id, r.status.value, r.revision) for r in rows])


def instance_version(instance: WorkflowInstance | None) -> str:
    """The fingerprint of an instance page (``gone`` when it no longer exists)."""
    if instance is None:
        return "gone"
    return version_of(
        (
            instance.status.value,
            instance.revision,
            instance.control_request,
            instance.next_execution,
        )
    )


# ---------------------------------------------------------------------------- list


async def list_context(request: Request) -> dict[str, Any]:
    """Everything the list shows for the request's filters and page."""
    d = dashboard(request)
    params = {k: v for k, v in request.query_params.items() if k not in ("v", "once")}
    context: dict[str, Any] = {
        "params": params,
        "statuses": [s.value for s in WorkflowStatus],
        "rows": [],
        "counts": {},
        "total": None,
        "next_url": None,
        "error": None,
        "paged": bool(params.get("before")),
        "first_url": _query(params, before=None),
        "query": _query(params),
        "status_urls": {
            s.value: _query(params, status=s.value, before=None) for s in WorkflowStatus
        },
    }
    try:
        filters = Filters.from_query(params)
        after = Cursor.decode(params["before"]) if params.get("before") else None
    except FilterError as exc:
        context["error"] = str(exc)
        context["version"] = list_version([])
        return context
    client = d.client
    try:
        page = await read_page(client, filters, after, d.page_size)
        any_status = filters.without_status().query()
        for status in WorkflowStatus:
            any_status["status"] = status
            context["counts"][status.value] = await client.count_workflows(**any_status)
        context["total"] = await client.count_workflows(**filters.query())
    except (WfeError, ValueError) as exc:
        context["error"] = f"cannot read the store: {exc}"
        context["version"] = list_version([])
        return context
    context["rows"] = page.rows
    context["version"] = list_version(page.rows)
    if page.next is not None:
        context["next_url"] = _query(params, before=page.next.encode())
    return context


async def instance_list(request: Request) -> Response:
    """``GET /``: the instances, newest first, with filters, counts and search by id."""
    d = dashboard(request)
    search = request.query_params.get("id", "").strip()
    missing = None
    if search:
        try:
            await d.client.get_workflow_instance(search)
        except WorkflowNotFound:
            missing = f"No workflow instance has the id {search!r}."
        except SerializationError:
            pass  # it exists: its page says what cannot be read
        if missing is None:
            return RedirectResponse(request.url_for("instance", workflow_id=search), 303)
    context = await list_context(request)
    if missing:
        context["error"] = missing
    context["search"] = search
    return _render(request, "_list_live.html" if _partial(request) else "list.html", context)


# ---------------------------------------------------------------------------- instance


async def _subscriptions(client: Any, instance: WorkflowInstance) -> list[EventSubscription]:
    """The live subscriptions of ``instance``: those of its waiting pointers."""
    found: list[EventSubscription] = []
    wanted = {
        (p.event_name, p.event_key)
        for p in instance.execution_pointers
        if p.event_name is not None and not p.event_published and p.end_time is None
    }
    horizon = datetime.now(UTC) + timedelta(days=36500)  # subscriptions made at any time
    for name, key in sorted(wanted, key=repr):
        if name is None or key is None:
            continue
        for sub in await client.persistence.get_subscriptions(name, key, horizon):
            if sub.workflow_id == instance.id:
                found.append(sub)
    return found


async def instance_context(request: Request, workflow_id: str) -> dict[str, Any]:
    """Everything the instance page shows; raises 404 for an unknown id."""
    client = dashboard(request).client
    try:
        instance = await client.get_workflow_instance(workflow_id)
    except WorkflowNotFound:
        raise HTTPException(404, f"No workflow instance has the id {workflow_id!r}.") from None
    errors = await client.get_errors(workflow_id)
    known = {p.id for p in instance.execution_pointers}
    waiting = [
        p
        for p in instance.execution_pointers
        if p.event_name is not None and not p.event_published and p.end_time is None
    ]
    return {
        "instance": instance,
        "data": show_value(instance.data),
        "tree": pointer_tree(list(instance.execution_pointers), errors),
        "errors": errors,
        "loose_errors": [e for e in errors if e.execution_pointer_id not in known],
        "received": [
            p for p in instance.execution_pointers if p.event_name is not None and p.event_published
        ],
        "waiting": waiting,
        "subscriptions": await _subscriptions(client, instance),
        "undecodable": undecodable_values(instance),
        "show_value": show_value,
        "version": instance_version(instance),
        "ended": instance.status in (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED),
    }


async def instance_page(request: Request) -> Response:
    """``GET /instances/{id}``: header, timeline, errors, data, events, actions."""
    workflow_id = request.path_params["workflow_id"]
    try:
        context = await instance_context(request, workflow_id)
    except SerializationError as exc:
        return _render(
            request,
            "error.html",
            {"title": "Cannot read this instance", "message": str(exc)},
            status=500,
        )
    params = request.query_params
    done, failed = params.get("done"), params.get("failed")
    if done in _DONE:
        context["notice"] = _DONE[done]
    elif failed in _REFUSED:
        context["notice"] = _REFUSED[failed]
    if params.get("event"):
        context["notice"] = f"Published event {params['event']}."
    context["params"] = {}
    waiting = context["waiting"]
    context["publish_name"] = params.get("name") or (waiting[0].event_name if waiting else "")
    context["publish_key"] = params.get("key") or (waiting[0].event_key if waiting else "")
    name = "_instance_live.html" if _partial(request) else "instance.html"
    return _render(request, name, context)


# ---------------------------------------------------------------------------- actions


async def _checked_form(request: Request) -> FormData:
    """The POSTed form, after checking its form secret (403 when wrong)."""
    form = await request.form()
    given = form.get("csrf")
    if not same_secret(given if isinstance(given, str) else None, dashboard(request).csrf):
        raise HTTPException(403, "This form has expired or came from another site: reload.")
    return form


def _confirm(request: Request, form: FormData, question: str) -> Response:
    """The confirmation page re-posting ``form`` with ``confirmed=1``."""
    fields = [(k, v) for k, v in form.multi_items() if k != "confirmed" and isinstance(v, str)]
    back = request.url_for("instance", workflow_id=request.path_params["workflow_id"])
    context = {
        "question": question,
        "action": str(request.url.path),
        "fields": fields,
        "back": str(back),
    }
    return _render(request, "confirm.html", context)


async def control(request: Request) -> Response:
    """``POST /instances/{id}/{suspend|resume|terminate}``."""
    workflow_id = request.path_params["workflow_id"]
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise HTTPException(404, f"There is no action {action!r}.")
    form = await _checked_form(request)
    if form.get("confirmed") != "1":
        return _confirm(request, form, f"{action.capitalize()} workflow {workflow_id}?")
    client = dashboard(request).client
    try:
        ok = await getattr(client, f"{action}_workflow")(workflow_id)
    except WorkflowNotFound:
        raise HTTPException(404, f"No workflow instance has the id {workflow_id!r}.") from None
    except WfeError as exc:
        return _render(
            request,
            "error.html",
            {"title": f"Could not {action} {workflow_id}", "message": str(exc)},
            status=409,
        )
    target = request.url_for("instance", workflow_id=workflow_id)
    return RedirectResponse(f"{target}?{'done' if ok else 'failed'}={action}", 303)


async def publish(request: Request) -> Response:
    """``POST /instances/{id}/publish``: publish an event (name, key, JSON data)."""
    workflow_id = request.path_params["workflow_id"]
    form = await _checked_form(request)
    name = str(form.get("name") or "").strip()
    key = str(form.get("key") or "")
    text = str(form.get("data") or "").strip()
    problem = None if name else "An event needs a name."
    data: Any = None
    if text and problem is None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            problem = f"The event data is not JSON: {exc}."
    if problem is not None:
        return _render(
            request, "error.html", {"title": "Not published", "message": problem}, status=400
        )
    if form.get("confirmed") != "1":
        return _confirm(request, form, f"Publish event {name!r} with key {key!r}?")
    try:
        event_id = await dashboard(request).client.publish_event(name, key, data)
    except (WfeError, ValueError, TypeError) as exc:
        return _render(
            request, "error.html", {"title": "Not published", "message": str(exc)}, status=400
        )
    target = request.url_for("instance", workflow_id=workflow_id)
    return RedirectResponse(f"{target}?{urlencode({'event': event_id})}", 303)


# ---------------------------------------------------------------------------- other pages


async def schedules(request: Request) -> Response:
    """``GET /schedules``: every schedule with its next fire time."""
    try:
        found = await dashboard(request).client.list_schedules()
        error = None
    except WfeError as exc:
        found, error = [], f"cannot read the schedules: {exc}"
    context = {"schedules": found, "error": error, "show_value": show_value, "params": {}}
    return _render(request, "schedules.html", context)


def _safe_next(target: str) -> str:
    """``target`` when it is a path of this site, else ``/``."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def login(request: Request) -> Response:
    """``GET/POST /login``: the token form; sets the HttpOnly cookie."""
    d = dashboard(request)
    if d.token is None:
        return RedirectResponse("/", 303)
    target = _safe_next(request.query_params.get("next", "/"))
    if request.method == "GET":
        return _render(request, "login.html", {"next": target, "error": None, "params": {}})
    form = await request.form()
    given = form.get("token")
    target = _safe_next(str(form.get("next") or "/"))
    if not same_secret(given if isinstance(given, str) else None, d.token):
        context = {"next": target, "error": "That is not the token.", "params": {}}
        return _render(request, "login.html", context, status=401)
    response = RedirectResponse(target, 303)
    gate = _gate(request)
    response.headers.append("set-cookie", gate.cookie_header(cookie_value(d.token)))
    return response


async def logout(request: Request) -> Response:
    """``POST /logout``: forget the cookie."""
    response = RedirectResponse("/login", 303)
    response.headers.append("set-cookie", _gate(request).cookie_header("", max_age=0))
    return response


def _gate(request: Request) -> TokenGate:
    """A :class:`~wfe_dashboard.security.TokenGate` with the app's settings (for
    writing its cookie)."""
    secure = bool(getattr(request.app.state, "secure_cookie", False))
    return TokenGate(request.app, dashboard(request).token, secure_cookie=secure)


_TITLES = {403: "Refused", 404: "Not found", 405: "Not allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    """The error page of an HTTP error (404 and the like)."""
    status = int(getattr(exc, "status_code", 500))
    detail = getattr(exc, "detail", None) or "Something went wrong."
    context: dict[str, Any] = {
        "title": _TITLES.get(status, "Error"),
        "message": detail,
        "params": {},
    }
    return _render(request, "error.html", context, status=status)
