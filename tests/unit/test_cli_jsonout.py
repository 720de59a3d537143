"""event_to_json and `wahook normalize` (in-process and as a real process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from wahook.cli import main
from wahook.commands.jsonout import event_to_json
from wahook.core.normalize import normalize

DATA = Path(__file__).resolve().parents[1] / "data"
FIXTURE = DATA / "msg_text_escaped_unicode.json"


def test_event_to_json_is_one_line_camel_case_unescaped() -> None:
    event = normalize(FIXTURE.read_bytes(), 1764000100.0)[0]
    line = event_to_json(event)
    assert "\n" not in line
    assert "Café" in line
    assert "😀" in line
    mapping = json.loads(line)
    assert mapping["dedupeKey"] == "message:200000000000001:wamid.ESCAPED01"
    assert mapping["type"] == "EVENT_TYPE_MESSAGE"
    assert mapping["message"]["typeName"] == "text"
    assert mapping["receivedTime"] == "2025-11-24T16:01:40Z"


def test_cli_prints_one_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "batch_messages_and_statuses.json"
    assert main(["normalize", str(path), "--received-at", "1764000100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [event_to_json(e) for e in normalize(path.read_bytes(), 1764000100.0)]
    assert lines == expected
    assert len(lines) == 4


def test_cli_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class FakeStdin:
        buffer = __import__("io").BytesIO(FIXTURE.read_bytes())

    monkeypatch.setattr(sys, "stdin", FakeStdin)
    assert main(["normalize", "-", "--received-at", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["receivedTime"] == "1970-01-01T00:00:00Z"


def test_cli_default_received_at_is_now(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["normalize", str(FIXTURE)]) == 0
    assert json.loads(capsys.readouterr().out)["receivedTime"] > "2025-"


def test_cli_invalid_json_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"object": ')
    assert main(["normalize", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err
    assert err.startswith(f"wahook normalize: {bad}: body is not valid JSON")


def test_cli_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["normalize", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "soon"])
def test_cli_rejects_bad_received_at(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["normalize", str(FIXTURE), "--received-at", value])
    assert info.value.code == 2
    assert "--received-at" in capsys.readouterr().err


def test_wahook_normalize_as_a_real_process() -> None:
    exe = Path(sys.executable).with_name("wahook")
    done = subprocess.run(
        [str(exe), "normalize", str(DATA / "non_whatsapp_object.json")],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, b"")
    done = subprocess.run(
        [str(exe), "normalize", "-", "--received-at", "1764000100"],
        input=b"[1, 2]",
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"not a JSON object" in done.stderr
    done = subprocess.run(
        [str(exe), "normalize", str(FIXTURE), "--received-at", "1764000100"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["message"]["text"]["body"].startswith("Café")
