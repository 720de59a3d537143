"""External load tools: installs wrk and py-spy when missing, builds the Go open-loop tool.

Every tool is installed by this module on first use (apt for wrk, pip into the venv for py-spy,
`go build` for bench/loadgen and the floor server), so `make bench` works on a fresh machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
LOADGEN_SRC = BENCH / "loadgen"
FLOOR_SRC = BENCH / "baselines" / "floor_go"
WRK_SCRIPT = BENCH / "lua" / "signed_bodies.lua"
TOOLS_DIR = BENCH / "results" / ".bin"

# The load runs on core 0 and the server on core 1 so they never steal each other's cycles.
LOAD_CORE = "0"
SERVER_CORE = "1"


def pinned(core: str, argv: list[str]) -> list[str]:
    """``argv`` run on one core when taskset exists and the machine has that core."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > int(core):
        return ["taskset", "-c", core, *argv]
    return argv


def ensure_wrk() -> str:
    """Path of wrk, installing Debian's package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk missing, installing it with apt-get", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after apt-get install")
    return found


def _go_build(src: Path, name: str) -> Path:
    """``go build`` of the module in ``src`` into TOOLS_DIR/``name``, again when a source is newer
    than the binary."""
    binary = TOOLS_DIR / name
    sources = [*src.glob("*.go"), src / "go.mod"]
    newest = max(p.stat().st_mtime for p in sources)
    if binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go") or "/usr/local/go/bin/go"
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=src, check=True)
    return binary


def ensure_loadgen() -> Path:
    """The open-loop generator binary, rebuilt when its source is newer."""
    return _go_build(LOADGEN_SRC, "loadgen")


def ensure_floor() -> Path:
    """The do-nothing Go server (bench/baselines/floor_go), built the same way as the loadgen."""
    return _go_build(FLOOR_SRC, "floor")


EXPRESS_DIR = BENCH / "baselines" / "express"
NODE_DIR = TOOLS_DIR.parent / ".node"


def ensure_express() -> Path:
    """node_modules holding express for the Express baseline, npm-installed (pinned by its
    package.json) outside the source tree, in the gitignored results directory."""
    manifest = EXPRESS_DIR / "package.json"
    stamp = NODE_DIR / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= manifest.stat().st_mtime:
        return NODE_DIR / "node_modules"
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(manifest, NODE_DIR / "package.json")
    npm = shutil.which("npm") or "npm"
    argv = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"]
    subprocess.run(argv, cwd=NODE_DIR, check=True)
    stamp.touch()
    return NODE_DIR / "node_modules"


PYWA_DIR = BENCH / "baselines" / "pywa_starlette"
PYWA_ASYNC_DIR = BENCH / "baselines" / "pywa_async"
UVLOOP_DIR = BENCH / "baselines" / "tornado_uvloop"


def _side_venv(name: str, requirements: Path) -> Path:
    """The python of a virtualenv under bench/results/ holding ``requirements``, so a baseline's
    dependencies never mix with wahook's."""
    venv = TOOLS_DIR.parent / f".venv-{name}"
    stamp = venv / ".installed"
    python = venv / "bin" / "python"
    if stamp.exists() and stamp.stat().st_mtime >= requirements.stat().st_mtime:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    stamp.touch()
    return python


def ensure_pywa() -> Path:
    """Python with pywa[server] (pywa_starlette/requirements.txt)."""
    return _side_venv("pywa", PYWA_DIR / "requirements.txt")


def ensure_pywa_async() -> Path:
    """Python with pywa[server], uvicorn, httptools and uvloop (pywa_async/requirements.txt)."""
    return _side_venv("pywa-async", PYWA_ASYNC_DIR / "requirements.txt")


def ensure_uvloop() -> Path:
    """Python with Tornado and uvloop (tornado_uvloop/requirements.txt)."""
    return _side_venv("uvloop", UVLOOP_DIR / "requirements.txt")


def ensure_py_spy() -> str:
    """Path of py-spy, pip-installing it into the running venv when missing."""
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("py-spy")
    if found:
        return found
    print("bench: py-spy missing, installing it with pip", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(candidate)


def run_wrk(
    url: str,
    bodies: Path,
    seconds: float,
    connections: int = 50,
    threads: int = 1,
    *,
    pin: bool = True,
) -> dict[str, Any]:
    """Closed-loop at max: wrk cycling pre-signed bodies; returns the script's JSON plus ``rps``
    (POSTs answered per second of the run) and ``bodies_ran_out``: the run ended early because
    every body was sent once (signed_bodies.lua stops rather than repeat one), so it lasted
    ``seconds_run``, not ``seconds``."""
    wrk = ensure_wrk()
    argv = (pinned if pin else lambda _core, argv: argv)(
        LOAD_CORE,
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            url,
            "--",
            str(bodies),
            str(threads),
            str(-(-connections // threads)),
        ],
    )
    lines: list[str] = []
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "WRK_BODIES_USED":
                _interrupt(proc)
    output = "".join(lines)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{output[-2000:]}")
    for line in lines:
        if line.startswith("WRK_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            errors = sum(v for k, v in result.items() if k.startswith("errors_"))
            good = result["requests"] - errors
            result["rps"] = good / (result["duration_us"] / 1e6)
            result["errors"] = errors
            result["seconds_run"] = round(result["duration_us"] / 1e6, 3)
            result["bodies_ran_out"] = result.pop("threads_ran_out") > 0
            return result
    raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")


def _interrupt(proc: subprocess.Popen[str]) -> None:
    """SIGINT to wrk until it ends its run: wrk ignores SIGINT until its threads have started
    (then it stops them and prints its summary), and a body can run out before that."""
    while proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue


def run_loadgen(
    url: str,
    bodies: Path,
    rate: float,
    seconds: float,
    warmup: float = 0.0,
    offset: int = 0,
    run_id: str = "",
    secret: str = "",
) -> dict[str, Any]:
    """Open-loop at a fixed rate, latency from the intended send time (microseconds)."""
    argv = pinned(
        LOAD_CORE,
        [
            str(ensure_loadgen()),
            f"-url={url}",
            f"-bodies={bodies}",
            f"-rate={rate}",
            f"-duration={seconds}s",
            f"-warmup={warmup}s",
            f"-offset={offset}",
            f"-run={run_id}",
        ],
    )
    env = {**os.environ, "WAHOOK_BENCH_SECRET": secret}
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
