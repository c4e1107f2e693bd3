"""``/metrics`` (Prometheus text format), ``/healthz`` and ``/readyz`` for a host:
:func:`serve_metrics`, a small Starlette app served by uvicorn on the host's event loop.

* ``/metrics``: what the OpenTelemetry Prometheus exporter's reader collected (through
  ``prometheus_client``), in the Prometheus text exposition format.
* ``/healthz``: liveness, 200 ``{"status": "ok"}`` while the process serves.
* ``/readyz``: readiness, 200 when the store answers a cheap read within
  ``ready_timeout`` seconds and (for a host) the host runs with all its background
  tasks (consumers, poller, control watcher, schedules) alive; else 503 with
  ``{"status": "unavailable", "reasons": [...]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

import uvicorn
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from wfe_core.models import utcnow

from wfe_otel.instrumentation import WfeInstrumentation, instrument

__all__ = ["MetricsServer", "health_app", "readiness", "serve_metrics"]


async def readiness(host: Any, timeout: float = 2.0) -> list[str]:
    """Why ``host`` is not ready (empty when it is): its store does not answer a cheap
    read within ``timeout`` seconds, or (a host) it is not running or one of its
    background tasks has stopped."""
    reasons: list[str] = []
    running = getattr(host, "running", None)
    if running is False:
        reasons.append("the host is not running (not started yet, or stopping)")
    elif running:
        stopped = getattr(host, "stopped_tasks", None)  # a host (a client has none)
        for name in stopped() if callable(stopped) else ():
            reasons.append(f"the host's background task {name} has stopped")
    try:
        await asyncio.wait_for(host.persistence.get_runnable_instances(utcnow(), 1), timeout)
    except TimeoutError:
        reasons.append(f"the store did not answer within {timeout:g}s")
    except Exception as exc:
        reasons.append(f"the store is unreachable: {type(exc).__name__}: {exc}")
    return reasons


def health_app(host: Any, registry: CollectorRegistry, *, ready_timeout: float = 2.0) -> Starlette:
    """The Starlette app serving ``/metrics`` from ``registry`` and the health checks
    of ``host`` (see the module)."""

    async def metrics(request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        reasons = await readiness(host, ready_timeout)
        if reasons:
            return JSONResponse({"status": "unavailable", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the application (``wfe worker``) owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of ``host`` on ``host_address:port``
    (``port`` 0: any free port, see :attr:`port`); made started by
    :func:`serve_metrics`; :meth:`stop` it (or use it as an async context manager)."""

    def __init__(
        self,
        host: Any,
        port: int = 0,
        host_address: str = "127.0.0.1",
        *,
        registry: CollectorRegistry,
        ready_timeout: float = 2.0,
        owned: tuple[WfeInstrumentation, MeterProvider] | None = None,
    ) -> None:
        self.host = host
        self.host_address = host_address
        self.registry = registry
        """The ``prometheus_client`` registry ``/metrics`` serves."""
        self._port = port
        self._owned = owned
        self._server = _Server(
            uvicorn.Config(
                health_app(host, registry, ready_timeout=ready_timeout),
                log_config=None,  # leave the application's logging alone
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen when started with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://address:port``."""
        address = f"[{self.host_address}]" if ":" in self.host_address else self.host_address
        return f"http://{address}:{self._port}"

    async def start(self) -> None:
        """Bind and serve; an address in use raises ``OSError`` here."""
        if self._task is not None:
            return
        family = socket.AF_INET6 if ":" in self.host_address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host_address, self._port))
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno,
                f"cannot serve metrics on {self.host_address}:{self._port}: {exc.strerror}; "
                "pick another port (--metrics-port)",
            ) from exc
        self._socket = sock
        self._port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="wfe-metrics")
        instrumentation = getattr(self.host, "instrumentation", None)
        if isinstance(instrumentation, WfeInstrumentation):  # gauges read on this loop
            instrumentation.metrics.loop = asyncio.get_running_loop()
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the metrics server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving (and undo the instrumentation :func:`serve_metrics` made, if
        it made one); idempotent."""
        task, self._task = self._task, None
        if task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5.0)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        owned, self._owned = self._owned, None
        if owned is not None:
            instrumentation, provider = owned
            instrumentation.close()
            provider.shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve_metrics(
    host: Any,
    port: int = 0,
    host_address: str = "127.0.0.1",
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
    ready_timeout: float = 2.0,
) -> MetricsServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` of ``host`` on
    ``host_address:port`` (127.0.0.1 by default; 0 picks a free port); return the
    started :class:`MetricsServer`.

    A host without instrumentation is instrumented here (:func:`instrument`) with an
    OpenTelemetry SDK meter provider whose Prometheus reader feeds ``registry`` (a new
    one by default) and with ``tracer_provider`` (default: the global one); stopping
    the server undoes it. A host instrumented already keeps its meter provider: give
    the registry its ``PrometheusMetricReader`` feeds (default: prometheus_client's
    global ``REGISTRY``, the reader's default).
    """
    owned: tuple[WfeInstrumentation, MeterProvider] | None = None
    if getattr(host, "instrumentation", None) is None:
        registry = registry if registry is not None else CollectorRegistry()
        reader = PrometheusMetricReader(registry=registry)
        # exemplars: the Prometheus text format has no place for them; skip their cost
        provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
        made = instrument(host, meter_provider=provider, tracer_provider=tracer_provider)
        owned = (made, provider)
    elif registry is None:
        registry = REGISTRY
    server = MetricsServer(
        host, port, host_address, registry=registry, ready_timeout=ready_timeout, owned=owned
    )
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    return server
