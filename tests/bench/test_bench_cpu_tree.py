"""A server's CPU in the bench includes the processes under it (``--workers``' fronts)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from benchlib.suites_http import _cpu_seconds, _tree_cpu_seconds  # noqa: E402

# A parent that starts a child which burns 0.3 s of CPU, says so, and waits: the parent itself
# burns nothing. Both stay alive until the test closes the parent's stdin.
_PARENT = textwrap.dedent(
    """
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", '''
    import sys, time
    while time.process_time() < 0.3:
        pass
    print("burned", flush=True)
    sys.stdin.read()
    '''], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    print(child.stdout.readline().strip(), flush=True)
    sys.stdin.read()
    child.stdin.close()
    child.wait()
    """
)


def test_a_servers_cpu_counts_its_child_processes() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "burned"
        own, tree = _cpu_seconds(proc.pid), _tree_cpu_seconds(proc.pid)
        assert tree >= 0.3
        assert tree - own >= 0.29  # the child's 0.3 s (10 ms clock ticks)
    finally:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
