"""Fuzz: every supported extension × broken, lying, huge and valid inputs, each loaded in a limited child.

For each extension ``load_point_cloud`` is run on generated files (empty, random bytes, valid files
cut at several points, NaN/inf, one point, all points equal, a header declaring ~1e9 points,
counts that disagree with the data, another format behind the extension, coordinates of 1e39,
transposed arrays, and valid controls) through :func:`clip2point.sandbox.call_limited` with a
per-file budget of 10 s and 1 GiB. The outcome must be a valid PointCloud or a Clip2PointError
raised on purpose: never a timeout, a crash, a MemoryError or another exception type. Categories
with a known answer (see ``fuzz_files.EXPECT``) must give it. Files are generated at test time
(seeded); nothing binary is committed.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from clip2point.errors import Clip2PointError, ResourceLimitError, SandboxError
from clip2point.io import SUPPORTED_MESH_EXTENSIONS, SUPPORTED_POINT_EXTENSIONS
from clip2point.sandbox import call_limited, sandbox_available
from fuzz_files import EXPECT, load_outcome, make_cases

pytestmark = pytest.mark.skipif(not sandbox_available(), reason="needs the multiprocessing forkserver (POSIX)")

EXTENSIONS = tuple(dict.fromkeys(SUPPORTED_POINT_EXTENSIONS + SUPPORTED_MESH_EXTENSIONS))
TIMEOUT_S, MEMORY_MB = 10.0, 1024
SUMMARY: Counter = Counter()
FAILURES: list[str] = []


def _run(path: str) -> tuple[str, str]:
    try:
        kind, count = call_limited(load_outcome, path, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB)
        return "load", f"{count} points"
    except (ResourceLimitError, SandboxError) as err:
        return "bad", f"{type(err).__name__}: {err}"
    except Clip2PointError as err:
        text = str(err)
        if "\n" in text or len(text) > 600:
            return "bad", f"multi-line or overlong message: {text[:300]!r}"
        return "error", text


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_every_input_loads_or_gives_a_clean_error(tmp_path, ext):
    cases = make_cases(ext)
    paths = []
    for name, category, write in cases:
        path = tmp_path / f"{name}{ext}"
        write(path)
        paths.append(str(path))
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(_run, paths))
    problems = []
    for (name, category, _), path, (outcome, detail) in zip(cases, paths, outcomes):
        SUMMARY["inputs"] += 1
        SUMMARY[{"load": "valid loads", "error": "clean errors", "bad": "crashes/hangs/other"}[outcome]] += 1
        want = EXPECT.get(category)
        if outcome == "bad":
            problems.append(f"{name}{ext}: {detail}")
        elif want is not None and outcome != want:
            problems.append(f"{name}{ext} ({category}): expected {want}, got {outcome}: {detail}")
        elif outcome == "error" and f"{name}{ext}" not in detail:
            problems.append(f"{name}{ext}: the message does not name the file: {detail}")
    FAILURES.extend(problems)
    assert not problems, "\n".join(problems)


def test_fuzz_summary(capsys):
    """Prints the counts for the report (runs last in this module)."""
    if not SUMMARY:
        pytest.skip("the fuzz cases did not run")
    line = (f"fuzz: {SUMMARY['inputs']} inputs over {len(EXTENSIONS)} extensions: {SUMMARY['clean errors']} clean "
            f"errors, {SUMMARY['valid loads']} valid loads, {SUMMARY['crashes/hangs/other']} crashes/hangs/other")
    with capsys.disabled():
        print("\n" + line)
    assert SUMMARY["crashes/hangs/other"] == 0
