"""Cold start: a fresh process importing a handler and serving its first request.

Measured inside fresh interpreters (interpreter start-up excluded on both sides):
- baseline: the bare import of the stack (sqlalchemy.orm, pydantic, requests, psycopg2,
  Powertools' event handler);
- project: `import handlers.<name>` plus its first request, the database connection opened
  beforehand and excluded (the charge calls the local fake platform).

Both sides read precompiled bytecode (`compile_project`); a Lambda artifact packaged with
`slim` carries none, so there every module is compiled at a cold start on both sides.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BASELINE = """
import time
started = time.perf_counter()
import sqlalchemy.orm, pydantic, requests, psycopg2
import aws_lambda_powertools.event_handler
print(time.perf_counter() - started)
"""

PROJECT = """
import json, os, sys, time
started = time.perf_counter()
import handlers.{name} as handler
imported = time.perf_counter() - started
from sqlalchemy import text
from repositories import database
with database.engine().connect() as conn:  # the connection is not what we measure
    conn.execute(text("SELECT 1"))
from tests.events import LambdaContext, api_event
event = api_event(**json.loads(os.environ["BENCH_EVENT"]))
started = time.perf_counter()
answer = handler.lambda_handler(event, LambdaContext())
served = time.perf_counter() - started
assert answer["statusCode"] < 300, answer
print(imported + served)
"""


def _run(code: str, env: dict[str, str]) -> float:
    done = subprocess.run(  # noqa: S603 - our own code in a fresh interpreter
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold start run failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


# The packages the functions load (serverless.yml's package patterns).
PACKAGES = ("handlers", "domain", "repositories", "common", "adapters")


def compile_project() -> None:
    """Byte-compile the project's modules, as pip compiled the baseline's at install.

    With PYTHONDONTWRITEBYTECODE set (as on the bench machine) no import writes a .pyc, so
    every fresh interpreter compiled each project module from source (about 2 ms each)
    while the baseline's came precompiled: the project side paid a cost the other did
    not. compileall writes the bytecode whatever that setting says; imports read it."""
    subprocess.run(  # noqa: S603 - the standard library's compileall on our own sources
        [sys.executable, "-m", "compileall", "-q", *PACKAGES],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )


def measure(events: dict[str, list[dict]], env: dict[str, str]) -> dict:
    """events: handler module name -> one api_event kwargs per run (each must succeed).

    Runs are interleaved (baseline, then each handler, repeated), so a busy moment on a
    shared machine weighs on both sides alike.
    """
    env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    compile_project()
    repeat = max(len(e) for e in events.values())
    baseline: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in events}
    for i in range(repeat):
        baseline.append(_run(BASELINE, env))
        for name, runs in events.items():
            event = json.dumps(runs[i % len(runs)])
            times[name].append(_run(PROJECT.format(name=name), {**env, "BENCH_EVENT": event}))
    return {
        "runs": repeat,
        "baseline_s": statistics.median(baseline),
        "handlers": {name: statistics.median(t) for name, t in times.items()},
    }
