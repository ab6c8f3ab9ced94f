"""Sandbox databases for simulations: a marked copy, and the check that refuses others.

A sandbox is a database created by `copy` (CREATE DATABASE ... TEMPLATE, or pg_dump |
psql when the source has other sessions) and marked with a COMMENT ON DATABASE; nothing
else carries the mark, so `require_sandbox` refuses every real database.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

SANDBOX_MARK = "beerclub-sandbox"


class NotASandbox(RuntimeError):
    """The database was not created by `ops simulate` as a sandbox."""


def _admin(url: str) -> Engine:
    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def is_sandbox(url: str) -> bool:
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            comment = conn.scalar(
                text(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                    " WHERE datname = :name"
                ),
                {"name": make_url(url).database},
            )
    finally:
        engine.dispose()
    return bool(comment) and comment.startswith(SANDBOX_MARK)


def require_sandbox(url: str) -> None:
    if not is_sandbox(url):
        raise NotASandbox(
            f"database {make_url(url).database!r} was not created as a sandbox by"
            " `ops simulate`; refusing to simulate billing in it"
        )


def _pg_tool(name: str) -> str:
    try:
        import pgserver._commands as commands

        candidate = commands.POSTGRES_BIN_PATH / name
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is needed to copy a database that is in use")
    return found


def copy(source_url: str, name: str | None = None) -> str:
    """A new sandbox database holding a copy of `source_url`'s; returns its URL."""
    source = make_url(source_url)
    name = name or f"sandbox_{datetime.now():%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"
    target = source.set(database=name)
    engine = _admin(source_url)
    try:
        with engine.connect() as conn:
            try:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source.database}"'))
            except Exception:  # the source has other sessions: dump and restore instead
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                _dump_restore(source, target)
            stamp = datetime.now().isoformat(timespec="seconds")
            comment = f"{SANDBOX_MARK}: copy of {source.database} made by ops simulate {stamp}"
            conn.execute(text(f"COMMENT ON DATABASE \"{name}\" IS '{comment}'"))
            # A sandbox needs no durability: commits do not wait for the disk.
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    finally:
        engine.dispose()
    return target.render_as_string(hide_password=False)


def _libpq(url: Any) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _dump_restore(source: Any, target: Any) -> None:
    dump = subprocess.Popen(  # noqa: S603 (our own binaries, URLs we built)
        [_pg_tool("pg_dump"), "--no-owner", "--no-comments", "-d", _libpq(source)],
        stdout=subprocess.PIPE,
    )
    restore = subprocess.run(  # noqa: S603
        [_pg_tool("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", _libpq(target)],
        stdin=dump.stdout,
        capture_output=True,
    )
    dump.wait()
    if dump.returncode or restore.returncode:
        raise RuntimeError(f"copying the database failed: {restore.stderr.decode()[-500:]}")


def drop(url: str) -> None:
    require_sandbox(url)
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    finally:
        engine.dispose()
