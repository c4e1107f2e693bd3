"""No part of a password ever shows in a message, repr or log line: passwords holding an
unencoded ``/``, ``#``, ``?`` or ``@``, and secrets in the query string (``password``,
``sslpassword``, ``passphrase``, ``token``, ...), for every scheme."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from wfe_core.cli import cli
from wfe_core.errors import ProviderUnavailable
from wfe_core.models import QueueType
from wfe_core.registry import check_url_credentials, open_store, redact_url
from wfe_postgres.driver import PostgresDriver
from wfe_postgres.url import parse_postgres_url
from wfe_redis._connection import RedisSettings

from wfe_postgres import PostgresPersistenceProvider
from wfe_redis import RedisLockProvider, RedisQueueProvider

LEFT, RIGHT = "Kx7q", "Vb3m"
"""The two halves of every test password: neither may show anywhere."""

SPECIAL = ["/", "#", "?", "@"]
SCHEMES = ["postgresql", "postgres", "postgresql+asyncpg", "redis", "rediss", "nosuchstore"]


def secret_free(text: str) -> None:
    assert LEFT not in text, text
    assert RIGHT not in text, text


def url_with(scheme: str, char: str) -> str:
    """A URL whose password holds ``char`` unencoded."""
    tail = "/0" if scheme.startswith("redis") else "/db"
    return f"{scheme}://user:{LEFT}{char}{RIGHT}@db.example:1234{tail}"


@pytest.mark.parametrize("char", SPECIAL)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_redact_url_hides_a_password_holding_a_special_character(scheme: str, char: str) -> None:
    url = url_with(scheme, char)
    shown = redact_url(url)
    secret_free(shown)
    assert shown.startswith(f"{scheme}://user:***@")


@pytest.mark.parametrize(
    "name", ["password", "sslpassword", "passphrase", "sslkey_passphrase", "token", "PASSWORD"]
)
@pytest.mark.parametrize("char", ["", "&", "#", " "])
def test_redact_url_hides_secret_query_parameters(name: str, char: str) -> None:
    url = f"postgresql://user@h/db?sslmode=require&{name}={LEFT}{char}{RIGHT}&application_name=x"
    shown = redact_url(url)
    secret_free(shown)
    assert f"{name}=***" in shown
    assert "sslmode=require" in shown
    assert shown.endswith("&application_name=x")


def test_redact_url_hides_a_libpq_keyword_string() -> None:
    shown = redact_url(f"host=h password={LEFT}{RIGHT} sslpassword={LEFT} dbname=d")
    secret_free(shown)
    assert shown == "host=h password=*** sslpassword=*** dbname=d"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://h:5432/db", "postgresql://h:5432/db"),
        ("sqlite:///a@b.db?mode=ro", "sqlite:///a@b.db?mode=ro"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_leaves_the_rest(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    check_url_credentials(url)


@pytest.mark.parametrize("char", SPECIAL)
@pytest.mark.parametrize("scheme", ["postgresql", "redis"])
def test_ambiguous_passwords_are_refused_without_showing_them(scheme: str, char: str) -> None:
    url = url_with(scheme, char)
    with pytest.raises(ValueError, match="percent-encode") as refused:
        check_url_credentials(url)
    secret_free(str(refused.value))
    assert "percent-encode" in str(refused.value)


@pytest.mark.parametrize("char", SPECIAL)
@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
def test_postgres_url_refuses_them(scheme: str, char: str) -> None:
    with pytest.raises(ValueError, match="percent-encode") as refused:
        parse_postgres_url(url_with(scheme, char))
    secret_free(str(refused.value))
    assert "percent-encode" in str(refused.value)


@pytest.mark.parametrize("char", SPECIAL)
@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_redis_url_refuses_them(scheme: str, char: str) -> None:
    with pytest.raises(ValueError, match="percent-encode") as refused:
        RedisSettings.parse(url_with(scheme, char))
    secret_free(str(refused.value))


@pytest.mark.parametrize("char", SPECIAL)
def test_registry_refuses_them(char: str) -> None:
    for scheme in ("postgresql", "redis", "nosuchstore"):
        with pytest.raises(Exception) as refused:  # noqa: PT011 - ValueError or ProviderNotFound
            open_store(url_with(scheme, char))
        secret_free(str(refused.value))


@pytest.mark.parametrize("char", SPECIAL)
@pytest.mark.parametrize(
    "args",
    [
        ["list", "--url", "{url}"],
        ["show", "x", "--url", "{url}"],
        ["publish", "e", "k", "--url", "sqlite:///s.db", "--queue-url", "{redis}"],
        ["start", "order", "--app", "wfe_core.demo:workflows", "--lock-url", "{redis}"],
        ["worker", "--app", "wfe_core.demo:workflows", "--url", "{url}"],
    ],
    ids=["list", "show", "publish", "start", "worker"],
)
def test_cli_errors_never_show_them(
    args: list[str], char: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    filled = [
        a.format(url=url_with("postgresql", char), redis=url_with("redis", char)) for a in args
    ]
    result = CliRunner().invoke(cli, filled, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    secret_free(result.output)
    assert "percent-encode" in result.stderr


def test_reprs_never_show_them() -> None:
    password = quote(f"{LEFT}/{RIGHT}", safe="")
    pg = f"postgresql://user:{password}@h:5432/db?sslpassword={LEFT}{RIGHT}&sslmode=prefer"
    parsed = parse_postgres_url(pg)
    assert parsed.has_password
    secret_free(repr(parsed))
    secret_free(parsed.display)
    driver = PostgresDriver(pg)
    secret_free(repr(driver))
    secret_free(driver.name)
    rd = f"redis://:{password}@h:6379/0"
    secret_free(repr(RedisSettings.parse(rd)))
    secret_free(repr(RedisLockProvider(rd)))
    secret_free(repr(RedisQueueProvider(rd)))


def test_connection_errors_and_logs_never_show_them(caplog: pytest.LogCaptureFixture) -> None:
    """A store that cannot be reached is reported (and logged) without the password or
    the sslpassword (port 1 on this machine refuses at once)."""
    password = quote(f"{LEFT}#{RIGHT}", safe="")
    pg = f"postgresql://user:{password}@127.0.0.1:1/db?sslpassword={LEFT}{RIGHT}&connect_timeout=5"
    rd = f"redis://:{password}@127.0.0.1:1/0?connect_timeout=5"

    async def fail() -> list[str]:
        messages = []
        store = PostgresPersistenceProvider(PostgresDriver(pg))
        with pytest.raises(ProviderUnavailable) as pg_error:
            await store.ensure_store_exists()
        await store.close()
        messages.append(str(pg_error.value))
        queue = RedisQueueProvider(rd)
        with pytest.raises(ProviderUnavailable) as rd_error:
            await queue.queue_work("x", QueueType.WORKFLOW)
        messages.append(str(rd_error.value))
        return messages

    with caplog.at_level(logging.DEBUG):
        messages = asyncio.run(fail())
    for message in messages:
        secret_free(message)
    secret_free(caplog.text)
