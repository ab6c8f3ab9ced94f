"""Peak RSS of a fresh process serving GET /subscription/eligible on a data set.

python -m bench.memory <database url>   # prints {"peak_rss_mb": ..., "ids": ...}

It asks for the whole list (at 1M: built, encoded, then refused as too large) and then
walks every page: the worst a warm container does.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path


def peak_rss_kb() -> int:
    # VmHWM belongs to this process image; ru_maxrss would carry the forking parent's peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the handler's logs, for the process's life
    from bench import eligible

    status = eligible.whole()
    ids = eligible.all_pages()
    peak_kb = peak_rss_kb()
    out.write(json.dumps({"peak_rss_mb": peak_kb / 1024, "ids": len(ids), "whole": status}))
    out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
