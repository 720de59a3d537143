"""What a newcomer meets on the `wahook` command line: every option explained, `tail` with
the example subscribers' flags and honest exit codes, `send` kinds spelled either way,
`normalize` saying why a body gave no events."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from wahook import cli
from wahook.commands import send, tail
from wahook_testkit import free_port


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_option_has_help(command: str) -> None:
    parser = _subparsers(cli.build_parser([command]))[command]
    for action in parser._actions:
        assert action.help, (command, action.dest)
        assert action.help != argparse.SUPPRESS, (command, action.dest)


def test_tail_takes_the_example_subscribers_flags() -> None:
    parser = _subparsers(cli.build_parser(["tail"]))["tail"]
    argv = ["--group", "g", "--event-types", "message,status", "--message-types", "text"]
    argv += ["--from", "latest", "--count", "3", "--idle-exit", "1.5", "--target", "h:1"]
    args = parser.parse_args(argv)
    assert (args.start, args.count, args.idle_exit, args.target) == ("latest", 3, 1.5, "h:1")
    assert tail._split(args.types) == ["message", "status"]
    # The older repeatable spellings still work, and mix with the comma lists.
    args = parser.parse_args([*argv, "--type", "template_status_update", "--message-type", "image"])
    assert tail._split(args.types) == ["message", "status", "template_status_update"]
    assert tail._split(args.message_types) == ["text", "image"]


def test_tail_unknown_event_type_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["tail", "--group", "g", "--event-types", "message,mesage", "--target", "h:1"]
    assert cli.main(argv) == tail.EXIT_USAGE == 2
    err = capsys.readouterr().err
    assert "unknown mesage" in err
    assert "message, status" in err


def test_tail_that_never_reached_a_server_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    target = f"127.0.0.1:{free_port()}"  # nothing listens there
    argv = ["tail", "--group", "g", "--target", target, "--timeout", "0.5"]
    assert cli.main(argv) == tail.EXIT_NEVER_CONNECTED == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"never connected to {target}" in captured.err
    # --idle-exit ends it the same way, with the same code.
    argv = ["tail", "--group", "g", "--target", target, "--idle-exit", "0.5", "--count", "5"]
    assert cli.main(argv) == 3


@pytest.mark.parametrize(
    ("spelled", "kind"),
    [
        ("button-reply", "button_reply"),
        ("button_reply", "button_reply"),
        ("list-reply", "list_reply"),
        ("status_read", "status-read"),
        ("status-read", "status-read"),
        ("template_status", "template-status"),
        ("all", "all"),
    ],
)
def test_send_kinds_take_either_separator(spelled: str, kind: str) -> None:
    parser = _subparsers(cli.build_parser(["send"]))["send"]
    assert parser.parse_args([spelled]).kind == kind


def test_send_unknown_kind_names_the_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="unknown kind 'bogus'; one of: text"):
        send._kind("bogus")
    with pytest.raises(SystemExit) as info:
        cli.main(["send", "status_unknown"])
    assert info.value.code == 2
    assert "status-read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"object": "page", "entry": []}, '"object" is "page", not "whatsapp_business_account"'),
        ({"entry": []}, 'no "object"'),
        ({"object": "whatsapp_business_account", "entry": []}, "no entry has any change"),
        (
            {"object": "whatsapp_business_account", "entry": [{"id": "1555010", "changes": []}]},
            "no entry has any change",
        ),
    ],
)
def test_normalize_says_why_a_body_gave_no_events(
    payload: dict[str, object], why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "body.json"
    path.write_text(json.dumps(payload))
    assert cli.main(["normalize", str(path)]) == 0  # not an error: Meta sends such bodies
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"wahook normalize: {path}: 0 events: ")
    assert why in captured.err


def test_every_groups_action_option_has_help() -> None:
    groups = _subparsers(cli.build_parser(["groups"]))["groups"]
    actions = _subparsers(groups)
    assert sorted(actions) == ["dead-letters", "delete", "list", "seek"]
    for name, parser in actions.items():
        for action in parser._actions:
            assert action.help, (name, action.dest)


@pytest.mark.parametrize("seq", ["-5", "0", "x", str(2**63), "99999999999999999999999"])
@pytest.mark.parametrize("flag", ["--redeliver", "--discard"])
def test_groups_dead_letter_sequences_are_checked_as_flags(
    flag: str, seq: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A usage error (exit 2, with the reason), before any connection: not a traceback.
    with pytest.raises(SystemExit) as exited:
        cli.main(["groups", "dead-letters", "g", flag, "1", seq, "--target", "127.0.0.1:1"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--count", "-1"), ("--count", "2.5"), ("--timeout", "-1"), ("--idle-exit", "-0.5")],
)
def test_tail_refuses_negative_counts_and_times(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A usage error with the reason (before, --timeout -1 ended as "never connected").
    with pytest.raises(SystemExit) as exited:
        cli.main(["tail", flag, value, "--target", "127.0.0.1:1"])
    assert exited.value.code == 2
    assert f"argument {flag}: " in capsys.readouterr().err
