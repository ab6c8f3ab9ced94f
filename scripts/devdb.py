"""The embedded PostgreSQL (pgserver) for local runs and tests.

python -m scripts.devdb url [--data .pgdata] [--db beerclub]   # start if needed, print URL
python -m scripts.devdb url --form libpq     # the same URL for psql and other libpq clients
python -m scripts.devdb stop [--data .pgdata]  # also as root (the server runs as `pgserver`)
python -m scripts.devdb running [--data .pgdata]  # exit 0 if the server runs, else 1
python -m scripts.devdb psql [--db beerclub] [psql args]  # a SQL prompt (DATABASE_URL wins)
python -m scripts.devdb reset [--db beerclub]     # drop and create the database again, empty
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent


def server_url(data_dir: Path) -> str:
    """Start the embedded server in `data_dir` unless it runs, and return its admin URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    # cleanup_mode=None: the server outlives this process, so `make run` can reuse it.
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    return server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)


def ensure_database(admin_url: str, name: str) -> str:
    url = make_url(admin_url).set(database=name)
    engine = create_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    engine = create_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def configure(data_dir: Path, settings: dict[str, str]) -> None:
    """ALTER SYSTEM the running embedded server in `data_dir`, then restart it."""
    url = server_url(data_dir)
    engine = create_engine(make_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for name, value in settings.items():
            conn.execute(text(f"ALTER SYSTEM SET {name} = '{value}'"))
    engine.dispose()
    import pgserver
    from pgserver._commands import pg_ctl

    server = pgserver.get_server(data_dir, cleanup_mode=None)
    pg_ctl(["-w", "restart", "-m", "fast"], pgdata=server.pgdata, user=server.system_user)


def running(data_dir: Path) -> bool:
    """Whether the embedded server in `data_dir` runs (its postmaster answers a signal 0)."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _bin(name: str) -> str:
    """A PostgreSQL client binary: the one pgserver ships, else the system's."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(ROOT))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver._commands as commands

    shipped = commands.POSTGRES_BIN_PATH / name
    return str(shipped) if shipped.exists() else name


def stop(data_dir: Path) -> bool:
    """Stop the embedded server in `data_dir`; True if one was running and has stopped.

    pgserver runs PostgreSQL as the system user `pgserver` when started by root, and
    pg_ctl refuses to run as root: run it as that user then.
    """
    if not running(data_dir):
        return False
    user = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    result = subprocess.run(
        [_bin("pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
        check=False,
        capture_output=True,
        text=True,
        user=user,
    )
    if result.returncode != 0 or running(data_dir):
        raise SystemExit(
            f"could not stop the embedded PostgreSQL in {data_dir}: "
            f"{(result.stderr or result.stdout).strip() or 'pg_ctl failed'}"
        )
    return True


def libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy URL (psql, pg_dump, psycopg2.connect)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["url", "stop", "running", "psql", "reset"])
    parser.add_argument("--data", default=str(ROOT / ".pgdata"))
    parser.add_argument("--db", default="beerclub")
    parser.add_argument("--form", choices=["sqlalchemy", "libpq"], default="sqlalchemy")
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "psql":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    data_dir = Path(args.data).resolve()
    if args.command == "stop":
        stopped = stop(data_dir)
        print(
            f"embedded PostgreSQL in {data_dir.name}/ "
            + ("stopped" if stopped else "was not running")
        )
        return 0
    if args.command == "running":
        return 0 if running(data_dir) else 1
    if args.command == "reset":
        admin = server_url(data_dir)
        drop_database(admin, args.db)
        ensure_database(admin, args.db)
        print(f"database {args.db} dropped and created again (empty) in {data_dir.name}/")
        return 0
    url = os.environ.get("DATABASE_URL") if args.command == "psql" else None
    url = url or ensure_database(server_url(data_dir), args.db)
    if args.command == "psql":
        sys.stdout.flush()
        # Replaces this process: the prompt gets the terminal, and its exit status is ours.
        # A script on stdin stops at its first error, with psql's exit status 3.
        script = [] if sys.stdin.isatty() else ["-v", "ON_ERROR_STOP=1"]
        os.execvp(_bin("psql"), [_bin("psql"), *script, libpq(url), *rest])  # noqa: S606
    print(libpq(url) if args.form == "libpq" else url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
