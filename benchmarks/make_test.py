"""``make bench-test``: how long ``make test`` takes from a fresh clone, stage by stage.

Clones the committed ``HEAD`` of this checkout into a scratch folder (uncommitted changes
are not in it), then runs there, one after another and timed, the stages of the
Makefile's ``test`` target (``TEST_STAGES``), starting with the virtual environment
(``make venv``, the install ``make test`` does first on a fresh machine). Writes
``benchmarks/make_test.json``: ``make_test_s`` (all stages), ``stages`` (seconds each), and
the date, commit and machine.
``make bench`` reads that file into ``results.json`` and its table, as it reads the
full-size series time from ``results/metrics.json``: neither is re-run by the benchmark.

System packages are not timed: ``.ci/run`` installs Chromium, bubblewrap and the hub's
proxy with apt before ``make test`` when they are missing, once per machine. Runs under
``CI=true``, as CI does, so a test that cannot run fails instead of skipping. Uses only
the standard library (it runs before the virtual environment exists).

    python3 -m benchmarks.make_test [--keep]   # about 12 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.paths import PROJECT_ROOT, write_atomically
from tooling.run_facts import cpu_model, git_commit, usable_cores

OUT = PROJECT_ROOT / "benchmarks" / "make_test.json"
RESULTS = PROJECT_ROOT / "benchmarks" / "results.json"


def makefile_stages(makefile: Path = PROJECT_ROOT / "Makefile") -> list[str]:
    """The stages of the Makefile's ``test`` target, in order (``TEST_STAGES``, their one
    source); a stage of several targets is joined by ``+`` (they run two at a time)."""
    match = re.search(r"^TEST_STAGES\s*:?=(.*)$", makefile.read_text(), flags=re.MULTILINE)
    if match is None or not match.group(1).split():
        raise ValueError(f"{makefile} sets no TEST_STAGES for its `test` target")
    return [stage.replace(",", "+") for stage in match.group(1).split()]


def time_stages(clone: Path, stages: list[str]) -> dict[str, float]:
    """Run each stage in ``clone`` as ``make test`` does (``make -j2 TARGET...``); seconds
    per stage. Raises ``RuntimeError`` naming the stage that failed, with the end of its
    output."""
    env = {**os.environ, "CI": "true"}
    env.pop("MNIST_AD_ARTIFACTS", None)  # the Makefile sets the CI-size folder itself
    seconds = {}
    for stage in stages:
        print(f"== make {stage}", flush=True)
        command = ["make", "-j2", "--output-sync=target", *stage.split("+")]
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=clone, env=env, capture_output=True, text=True, check=False
        )
        seconds[stage] = time.perf_counter() - started
        print(f"   {seconds[stage]:.0f} s", flush=True)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-3000:]
            raise RuntimeError(f"`make {stage}` failed after {seconds[stage]:.0f} s:\n{tail}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.make_test", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the scratch clone")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    commit = git_commit()
    if commit.endswith("-dirty"):
        print(f"note: uncommitted changes are not measured (the clone is of {commit[:-6]})")
    scratch = Path(tempfile.mkdtemp(prefix="make-test-"))
    clone = scratch / "clone"
    try:
        subprocess.run(["git", "clone", "--quiet", str(PROJECT_ROOT), str(clone)], check=True)
        stages = ["venv", *makefile_stages(clone / "Makefile")]
        seconds = time_stages(clone, stages)
    except (RuntimeError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "make_test_s": sum(seconds.values()),
        "stages": seconds,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit.removesuffix("-dirty"),
        "machine": f"{cpu_model()}, {usable_cores()} cores",
        "note": "a fresh clone under CI=true; system packages (apt) not included",
    }
    with write_atomically(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"make test from a fresh clone: {result['make_test_s'] / 60:.1f} min; wrote {args.out}")
    if args.out == OUT and RESULTS.exists():  # the benchmark's results read it in, as make bench
        from benchmarks.report import with_make_test

        merged = with_make_test(json.loads(RESULTS.read_text()), OUT)
        with write_atomically(RESULTS) as tmp:
            tmp.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
        print(f"updated {RESULTS} (the README table: python -m benchmarks.run --table --readme)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
