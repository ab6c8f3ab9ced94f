"""`make exactly-once`: run the fault matrix and write docs/exactly-once.md from its result.

    python -m scripts.exactly_once [--from result.json]

Runs `pytest tests/faults` (a real PostgreSQL, as `make test` uses) with
EXACTLY_ONCE_RESULT set, then renders the cells as the table in docs/exactly-once.md.
`--from` renders a result file written earlier instead of running the matrix.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "exactly-once.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="a result JSON written earlier")
    args = parser.parse_args(argv)
    from tests.faults import matrix

    if args.source:
        path = Path(args.source)
    else:
        path = Path(tempfile.mkstemp(suffix=".json", prefix="exactly-once-")[1])
        env = {**os.environ, "EXACTLY_ONCE_RESULT": str(path)}
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/faults"],
            cwd=ROOT,
            env=env,
            check=False,
        )
    cells = [matrix.Cell(**data) for data in json.loads(path.read_text() or "[]")]
    if not cells:
        print("the matrix produced no result", file=sys.stderr)
        return 1
    DOC.write_text(matrix.markdown(cells))
    failed = sum(c.result != "pass" for c in cells)
    print(f"{DOC.relative_to(ROOT)}: {len(cells) - failed} of {len(cells)} cells pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
