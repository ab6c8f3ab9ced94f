"""The embedded PostgreSQL (pgserver) for local runs and tests.

python -m scripts.devdb url [--data .pgdata] [--db beerclub]   # start if needed, print URL
python -m scripts.devdb stop [--data .pgdata]
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


def stop(data_dir: Path) -> None:
    if not (data_dir / "postmaster.pid").exists():
        return
    import pgserver._commands as commands

    subprocess.run(
        [str(commands.POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "stop"],
        check=False,
        capture_output=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["url", "stop"])
    parser.add_argument("--data", default=str(ROOT / ".pgdata"))
    parser.add_argument("--db", default="beerclub")
    args = parser.parse_args(argv)
    data_dir = Path(args.data).resolve()
    if args.command == "stop":
        stop(data_dir)
        return 0
    print(ensure_database(server_url(data_dir), args.db))
    return 0


if __name__ == "__main__":
    sys.exit(main())
