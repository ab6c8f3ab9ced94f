"""`serverless package`, once per session, for the deployed architecture (arm64) and for
the machine the tests run on, each in a copy of the service holding only what is packaged
(fast, and the worktree's own .serverless/ is left alone). API keys are on, as in
staging and prod. The fixtures are registered in tests/conftest.py (tests/deploy and the
smoke test use them)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "beer-club-subscriptions"
DEPLOYED_ARCH = "arm64"
LOCAL_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[
    platform.machine().lower()
]
SOURCES = ("handlers", "domain", "repositories", "common", "adapters", "deploy")


@dataclass(frozen=True)
class Packaged:
    architecture: str
    directory: Path

    @property
    def template(self) -> dict:
        return json.loads(
            (self.directory / "cloudformation-template-update-stack.json").read_text()
        )

    @property
    def artifact(self) -> Path:
        return self.directory / f"{SERVICE}.zip"

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.artifact) as zipped:
            return zipped.namelist()


def _service_copy(to: Path) -> None:
    to.mkdir(parents=True)
    for path in ROOT.iterdir():
        if path.is_file() and (
            path.suffix in (".yml", ".yaml", ".json") or path.name.startswith("requirements")
        ):
            shutil.copy2(path, to / path.name)
    for name in SOURCES:
        shutil.copytree(ROOT / name, to / name, ignore=shutil.ignore_patterns("__pycache__"))
    (to / "node_modules").symlink_to(ROOT / "node_modules")


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> dict[str, Packaged]:
    if not (ROOT / "node_modules" / ".bin" / "serverless").exists():
        pytest.fail("node_modules is missing: run `make install`")
    base = tmp_path_factory.mktemp("package")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SLS_TELEMETRY_DISABLED": "1",
    }
    for name in ("DATABASE_SECRET_ID", "ALARM_EMAIL", "DATABASE_HOST"):
        env.pop(name, None)
    for name in [k for k in env if k.startswith("AWS_")]:
        env.pop(name)  # packaging needs nothing from AWS
    running = {}
    for arch in sorted({DEPLOYED_ARCH, LOCAL_ARCH}):
        service = base / f"service-{arch}"
        _service_copy(service)
        log = (base / f"{arch}.log").open("w")
        running[arch] = (
            subprocess.Popen(
                [
                    str(service / "node_modules" / ".bin" / "serverless"),
                    "package",
                    "--param",
                    f"architecture={arch}",
                    "--param",
                    "privateApi=true",
                    "--package",
                    str(base / arch),
                ],
                cwd=service,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            log,
        )
    built = {}
    for arch, (process, log) in running.items():
        code = process.wait(timeout=600)
        log.close()
        if code != 0:
            pytest.fail(
                f"serverless package ({arch}) failed:\n{(base / f'{arch}.log').read_text()}"
            )
        built[arch] = Packaged(arch, base / arch)
    return built


@pytest.fixture(scope="session")
def deployed(packages) -> Packaged:
    return packages[DEPLOYED_ARCH]


@pytest.fixture(scope="session")
def deployed_template(deployed) -> dict:
    return deployed.template
