"""Config: flags over WAHOOK_* over --dev over defaults, secrets from files, clear refusals."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from wahook import config as cfg
from wahook.cli import build_parser
from wahook.commands import serve as serve_cmd
from wahook.errors import ConfigError

BASE_ENV = {
    "WAHOOK_APP_SECRET": "env-secret",
    "WAHOOK_TLS_CERT": "/tls/cert.pem",
    "WAHOOK_TLS_KEY": "/tls/key.pem",
}


def flags(**kw: Any) -> dict[str, Any]:
    return kw


def test_defaults() -> None:
    c = cfg.load({}, BASE_ENV)
    assert c.http_host == "0.0.0.0"
    assert c.http_port == 8443
    assert c.grpc_host == "127.0.0.1"
    assert c.grpc_port == 50051
    assert c.data_dir == Path("./var")
    assert c.max_body_bytes == 4 * 1024 * 1024
    assert c.retention == 7 * 86400
    assert c.log_level == "INFO"
    assert c.access_log == "errors"
    assert c.insecure_http is False
    assert c.dev_no_signature is False
    assert [s.reveal() for s in c.app_secrets] == ["env-secret"]
    assert c.verify_token is None
    assert c.http_scheme == "https"


def test_environment_sets_everything() -> None:
    env = {
        **BASE_ENV,
        "WAHOOK_APP_SECRET": "old, new",
        "WAHOOK_VERIFY_TOKEN": "tok",
        "WAHOOK_HTTP_HOST": "127.0.0.2",
        "WAHOOK_HTTP_PORT": "9443",
        "WAHOOK_GRPC_HOST": "0.0.0.0",
        "WAHOOK_GRPC_PORT": "0",
        "WAHOOK_GRPC_TOKEN": "t1,t2",
        "WAHOOK_DATA_DIR": "/data",
        "WAHOOK_MAX_BODY_BYTES": "512KiB",
        "WAHOOK_RETENTION": "12h",
        "WAHOOK_LOG_LEVEL": "debug",
        "WAHOOK_ACCESS_LOG": "ALL",
    }
    c = cfg.load({}, env)
    assert [s.reveal() for s in c.app_secrets] == ["old", "new"]
    assert c.verify_token is not None
    assert c.verify_token.reveal() == "tok"
    assert (c.http_host, c.http_port, c.grpc_host, c.grpc_port) == ("127.0.0.2", 9443, "0.0.0.0", 0)
    assert c.data_dir == Path("/data")
    assert c.max_body_bytes == 512 * 1024
    assert c.retention == 12 * 3600
    assert c.log_level == "DEBUG"
    assert c.access_log == "all"
    assert [t.reveal() for t in c.grpc_tokens] == ["t1", "t2"]


def test_flags_win_over_environment() -> None:
    env = {**BASE_ENV, "WAHOOK_HTTP_PORT": "9443", "WAHOOK_VERIFY_TOKEN": "env-tok"}
    c = cfg.load(flags(http_port="7443", app_secret="flag-secret", verify_token="flag-tok"), env)
    assert c.http_port == 7443
    assert [s.reveal() for s in c.app_secrets] == ["flag-secret"]
    assert c.verify_token is not None
    assert c.verify_token.reveal() == "flag-tok"


def test_unset_flags_do_not_override() -> None:
    c = cfg.load(flags(http_port=None, insecure_http=None), {**BASE_ENV, "WAHOOK_HTTP_PORT": "1"})
    assert c.http_port == 1


def test_secret_files(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("file-secret-a,file-secret-b\n")
    (tmp_path / "token").write_text("file-token\n")
    env = {
        "WAHOOK_APP_SECRET_FILE": str(tmp_path / "secret"),
        "WAHOOK_VERIFY_TOKEN_FILE": str(tmp_path / "token"),
        "WAHOOK_INSECURE_HTTP": "1",
    }
    c = cfg.load({}, env)
    assert [s.reveal() for s in c.app_secrets] == ["file-secret-a", "file-secret-b"]
    assert c.verify_token is not None
    assert c.verify_token.reveal() == "file-token"


def test_flag_file_wins_over_environment_value(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-flag-file")
    c = cfg.load(flags(app_secret_file=str(tmp_path / "secret")), BASE_ENV)
    assert [s.reveal() for s in c.app_secrets] == ["from-flag-file"]


def test_value_and_file_at_one_level_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    env = {**BASE_ENV, "WAHOOK_APP_SECRET_FILE": str(tmp_path / "secret")}
    with pytest.raises(ConfigError, match="WAHOOK_APP_SECRET and WAHOOK_APP_SECRET_FILE"):
        cfg.load({}, env)


def test_unreadable_secret_file_names_the_variable(tmp_path: Path) -> None:
    env = {**BASE_ENV, "WAHOOK_APP_SECRET": "", "WAHOOK_APP_SECRET_FILE": str(tmp_path / "no")}
    with pytest.raises(ConfigError, match="WAHOOK_APP_SECRET_FILE"):
        cfg.load({}, env)


def test_missing_secret_says_what_to_set() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "WAHOOK_APP_SECRET"}
    with pytest.raises(ConfigError, match="WAHOOK_APP_SECRET") as info:
        cfg.load({}, env)
    assert "--dev" in info.value.message


def test_dev_no_signature_needs_no_secret() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "WAHOOK_APP_SECRET"}
    c = cfg.load({}, {**env, "WAHOOK_DEV_NO_SIGNATURE": "1"})
    assert c.dev_no_signature
    assert c.app_secrets == ()


def test_https_without_certificate_is_refused() -> None:
    with pytest.raises(ConfigError, match="WAHOOK_TLS_CERT"):
        cfg.load({}, {"WAHOOK_APP_SECRET": "s"})


def test_half_a_certificate_is_refused() -> None:
    with pytest.raises(ConfigError, match="both"):
        cfg.load({}, {"WAHOOK_APP_SECRET": "s", "WAHOOK_TLS_CERT": "/c.pem"})


def test_insecure_http_needs_no_certificate() -> None:
    c = cfg.load(flags(insecure_http=True), {"WAHOOK_APP_SECRET": "s"})
    assert c.insecure_http
    assert c.http_scheme == "http"


@pytest.mark.parametrize(
    ("name", "value", "source"),
    [
        ("WAHOOK_HTTP_PORT", "70000", "WAHOOK_HTTP_PORT"),
        ("WAHOOK_GRPC_PORT", "grpc", "WAHOOK_GRPC_PORT"),
        ("WAHOOK_RETENTION", "a week", "WAHOOK_RETENTION"),
        ("WAHOOK_MAX_BODY_BYTES", "0", "WAHOOK_MAX_BODY_BYTES"),
        ("WAHOOK_LOG_LEVEL", "loud", "WAHOOK_LOG_LEVEL"),
        ("WAHOOK_ACCESS_LOG", "some", "WAHOOK_ACCESS_LOG"),
        ("WAHOOK_INSECURE_HTTP", "maybe", "WAHOOK_INSECURE_HTTP"),
    ],
)
def test_bad_values_name_their_source(name: str, value: str, source: str) -> None:
    with pytest.raises(ConfigError, match=source):
        cfg.load({}, {**BASE_ENV, name: value})


def test_dev_defaults_rank_below_environment() -> None:
    dev = {
        "app_secret": "dev-secret",
        "tls_cert": "/d/c",
        "tls_key": "/d/k",
        "http_host": "127.0.0.1",
    }
    c = cfg.load({}, {"WAHOOK_APP_SECRET": "env"}, dev=True, dev_defaults=dev)
    assert [s.reveal() for s in c.app_secrets] == ["env"]
    assert c.tls_cert == Path("/d/c")
    assert c.http_host == "127.0.0.1"
    assert c.dev


def test_repr_and_str_hide_secrets(caplog: pytest.LogCaptureFixture) -> None:
    env = {**BASE_ENV, "WAHOOK_APP_SECRET": "hunter2-a,hunter2-b", "WAHOOK_VERIFY_TOKEN": "tok-77"}
    c = cfg.load({}, env)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("config %s %r", c, c)
    for text in (repr(c), str(c), f"{c}", caplog.text, repr(c.app_secrets), str(c.verify_token)):
        assert "hunter2" not in text
        assert "tok-77" not in text
    assert "Secret('***')" in repr(c)


def test_dev_materials_are_made_once_and_kept(tmp_path: Path) -> None:
    first = serve_cmd.ensure_dev_materials(tmp_path)
    again = serve_cmd.ensure_dev_materials(tmp_path)
    assert first == again
    assert len(first["app_secret"]) == 32
    assert first["app_secret"] != first["verify_token"]
    key = Path(first["tls_key"])
    assert key.stat().st_mode & 0o077 == 0
    assert (tmp_path / "dev" / "app_secret").stat().st_mode & 0o077 == 0


def test_config_table_lists_every_option() -> None:
    table = cfg.config_table_markdown()
    for opt in cfg.OPTIONS:
        assert opt.env in table
        assert opt.flag in table


def test_serve_parser_has_a_flag_per_option() -> None:
    args = build_parser(["serve"]).parse_args(
        ["serve", "--http-port", "1", "--insecure-http", "--app-secret-file", "/s", "--dev"]
    )
    assert args.http_port == "1"
    assert args.insecure_http is True
    assert args.app_secret_file == "/s"
    assert args.dev is True
    assert args.grpc_port is None


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::", "wahook.internal"])
def test_grpc_off_loopback_without_authentication_refuses_to_start(host: str) -> None:
    env = {**BASE_ENV, "WAHOOK_GRPC_HOST": host}
    with pytest.raises(ConfigError, match=r"WAHOOK_GRPC_TOKEN.*WAHOOK_GRPC_ALLOW_UNAUTHENTICATED"):
        cfg.load({}, env)
    for extra in (
        {"WAHOOK_GRPC_TOKEN": "tok"},
        {"WAHOOK_GRPC_ALLOW_UNAUTHENTICATED": "1"},
        {"WAHOOK_GRPC_TLS_CERT": "c", "WAHOOK_GRPC_TLS_KEY": "k", "WAHOOK_GRPC_TLS_CLIENT_CA": "a"},
    ):
        assert cfg.load({}, {**env, **extra}).grpc_host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.9", "::1", "localhost"])
def test_grpc_on_loopback_needs_no_authentication(host: str) -> None:
    assert cfg.load({}, {**BASE_ENV, "WAHOOK_GRPC_HOST": host}).grpc_tokens == ()


def test_grpc_tls_settings_come_in_pairs() -> None:
    with pytest.raises(ConfigError, match="both WAHOOK_GRPC_TLS_CERT and WAHOOK_GRPC_TLS_KEY"):
        cfg.load({}, {**BASE_ENV, "WAHOOK_GRPC_TLS_CERT": "c"})
    with pytest.raises(ConfigError, match="CLIENT_CA needs"):
        cfg.load({}, {**BASE_ENV, "WAHOOK_GRPC_TLS_CLIENT_CA": "a"})


def test_grpc_token_from_a_file_with_several_tokens(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text("new-token, old-token\n")
    c = cfg.load({}, {**BASE_ENV, "WAHOOK_GRPC_TOKEN_FILE": str(f)})
    assert [t.reveal() for t in c.grpc_tokens] == ["new-token", "old-token"]
    assert "new-token" not in repr(c)


def test_listener_limits_parse_and_refuse_nonsense() -> None:
    c = cfg.load(
        {"http_max_connections": "500", "http_body_timeout": "2s"},
        {**BASE_ENV, "WAHOOK_HTTP_HEADER_TIMEOUT": "1.5", "WAHOOK_GRPC_STREAM_MAX_BYTES": "1MiB"},
    )
    assert (c.http_max_connections, c.http_body_timeout, c.http_header_timeout) == (500, 2, 1.5)
    assert c.grpc_stream_max_bytes == 1024 * 1024
    assert cfg.load({}, BASE_ENV).http_max_connections == 0  # auto
    for flags, message in (
        ({"http_max_connections": "0"}, "auto or at least 1"),
        ({"http_idle_timeout": "0s"}, "more than 0 seconds"),
        ({"allowed_phone_number_ids": "1555,abc"}, "not a numeric id"),
    ):
        with pytest.raises(ConfigError, match=message):
            cfg.load(flags, BASE_ENV)


def test_event_loop_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio  # noqa: PLC0415

    import uvloop  # noqa: PLC0415

    assert serve_cmd.loop_factory("asyncio") == (None, "asyncio")
    factory, name = serve_cmd.loop_factory("auto")
    assert factory is uvloop.new_event_loop
    assert name.startswith("uvloop ")
    assert serve_cmd.loop_factory("uvloop")[0] is uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
    # Where uvloop cannot be imported: auto falls back, an explicit uvloop is refused.
    monkeypatch.setitem(__import__("sys").modules, "uvloop", None)
    assert serve_cmd.loop_factory("auto") == (None, "asyncio (uvloop not installed)")
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        serve_cmd.loop_factory("uvloop")


def test_event_loop_is_checked() -> None:
    assert cfg.load({}, {**BASE_ENV, "WAHOOK_EVENT_LOOP": "UVLOOP"}).event_loop == "uvloop"
    assert cfg.load({}, BASE_ENV).event_loop == "auto"
    with pytest.raises(ConfigError, match="unknown event loop 'tokio'"):
        cfg.load({}, {**BASE_ENV, "WAHOOK_EVENT_LOOP": "tokio"})


def test_serve_help_renders_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse expands % in help texts: one stray percent sign breaks `wahook serve --help`.
    with pytest.raises(SystemExit) as exit_info:
        build_parser(["serve", "--help"]).parse_args(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for opt in cfg.OPTIONS:
        assert opt.flag in out
