"""The deployment package: built for the Lambda platform whatever machine packages it.

The artifact built for this machine's architecture is unpacked and every handler of the
template is imported from it alone (the standard library, the artifact, and boto3 as the
Lambda runtime provides it); every compiled module of the deployed architecture's
artifact is a Linux binary of that architecture."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.packaging import DEPLOYED_ARCH, LOCAL_ARCH

# ELF e_machine values (offset 18, little endian).
ELF_MACHINE = {"x86_64": 0x3E, "arm64": 0xB7}
SO_TAG = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
# What the Lambda Python runtime has besides the standard library (noDeploy).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py")


def handlers(template: dict) -> list[str]:
    return sorted(
        r["Properties"]["Handler"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    )


def runtime_stand_in(to: Path) -> Path:
    """boto3 and its dependencies, linked from this venv, as the runtime would have them."""
    import boto3

    site = Path(boto3.__file__).resolve().parents[1]
    to.mkdir()
    for name in RUNTIME_PROVIDED:
        if (site / name).exists():
            (to / name).symlink_to(site / name)
    return to


def test_every_handler_imports_from_the_artifact_alone(packages, tmp_path):
    # Given the artifact built for this machine, unpacked
    local = packages[LOCAL_ARCH]
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(local.artifact) as zipped:
        zipped.extractall(unpacked)
    runtime = runtime_stand_in(tmp_path / "runtime")
    names = handlers(local.template)
    assert len(names) >= 8
    # When a Python without site-packages imports every handler from it
    probe = (
        "import importlib, json, sys\n"
        f"sys.path[:0] = [{str(unpacked)!r}, {str(runtime)!r}]\n"
        "loaded = {}\n"
        f"for handler in {names!r}:\n"
        "    module, function = handler.rsplit('.', 1)\n"
        "    loaded[handler] = callable(getattr(importlib.import_module(module.replace('/', '.')),"
        " function))\n"
        "outside = sorted({m.__name__.split('.')[0] for m in list(sys.modules.values())\n"
        "    if getattr(m, '__file__', None) and 'site-packages' in m.__file__})\n"
        "print(json.dumps({'loaded': loaded, 'outside': outside}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe],
        cwd=tmp_path,
        env={"AWS_DEFAULT_REGION": "eu-west-1", "POWERTOOLS_DEV": "false"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Then every handler is there and callable, and nothing came from site-packages
    assert result["loaded"] == dict.fromkeys(names, True)
    assert result["outside"] == []


def test_every_compiled_module_of_the_deployed_artifact_is_built_for_its_architecture(deployed):
    # Given the artifact the stage deploys (arm64)
    assert deployed.architecture == DEPLOYED_ARCH
    with zipfile.ZipFile(deployed.artifact) as zipped:
        binaries = [n for n in zipped.namelist() if n.endswith(".so") or ".so." in n]
        headers = {n: zipped.read(n)[:20] for n in binaries}
    # Then there are compiled modules (psycopg2, pydantic-core, orjson, ...) and each one
    # is a Linux ELF for that architecture, named for it where Python names it
    assert any(n.startswith("psycopg2/_psycopg") for n in binaries)
    assert any(n.startswith("pydantic_core/_pydantic_core") for n in binaries)
    for name, head in headers.items():
        assert head[:4] == b"\x7fELF", name
        assert int.from_bytes(head[18:20], "little") == ELF_MACHINE[DEPLOYED_ARCH], name
        if ".cpython-" in name:
            assert f"cpython-311-{SO_TAG[DEPLOYED_ARCH]}" in name, name


def test_the_artifact_leaves_out_tests_headers_and_the_runtime_s_boto3(deployed):
    names = deployed.names()
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/")]
    assert not [n for n in names if n.endswith(".h")]
    assert not [n for n in names if n.startswith(("boto3/", "botocore/", "greenlet/"))]
    assert "handlers/billing_run.py" in names
    assert "openapi.yaml" in names


def test_every_module_of_the_deployed_artifact_comes_with_its_hash_checked_bytecode(deployed):
    # Given the artifact the stage deploys
    with zipfile.ZipFile(deployed.artifact) as zipped:
        names = set(zipped.namelist())
        sources = sorted(n for n in names if n.endswith(".py") and "/__pycache__/" not in n)
        # Then next to every module is the bytecode Python 3.11 loads instead of compiling
        # it (/var/task is read-only: nothing compiled at a cold start is kept): hash-checked
        # (PEP 552 flags 3), so the zip's modification times do not matter, and for this
        # very source
        missing, stale = [], []
        for source in sources:
            folder, _, file = source.rpartition("/")
            cached = f"{folder}/__pycache__/{file[:-3]}.cpython-311.pyc".lstrip("/")
            if cached not in names:
                missing.append(source)
                continue
            head = zipped.read(cached)[:16]
            flags = int.from_bytes(head[4:8], "little")
            if flags != 3 or head[8:16] != importlib.util.source_hash(zipped.read(source)):
                stale.append(source)
    assert len(sources) > 500
    # (serverless-python-requirements leaves out a __pycache__ at the artifact's root, so
    # the one top-level module among the dependencies is compiled at a cold start)
    assert missing == ["typing_extensions.py"]
    assert stale == []
    assert {"handlers/eligible.py", "repositories/eligible_pages.py"} <= set(sources)
    if sys.version_info[:2] == (3, 11):
        with zipfile.ZipFile(deployed.artifact) as zipped:
            pyc = zipped.read("handlers/__pycache__/eligible.cpython-311.pyc")
        assert pyc[:4] == importlib.util.MAGIC_NUMBER
