"""The media download settings: defaults, environment, the token as a Secret (and from a
file), refusals of a bad base URL, API version or size."""

from __future__ import annotations

from pathlib import Path

import pytest
from wahook import config as cfg
from wahook.errors import ConfigError

BASE_ENV = {
    "WAHOOK_APP_SECRET": "env-secret",
    "WAHOOK_TLS_CERT": "/tls/cert.pem",
    "WAHOOK_TLS_KEY": "/tls/key.pem",
}


def test_defaults_leave_media_download_off() -> None:
    c = cfg.load({}, BASE_ENV)
    assert c.graph_access_token is None
    assert c.graph_base_url == "https://graph.facebook.com"
    assert c.graph_api_version == "v24.0"
    assert c.media_max_bytes == 100 * 1024 * 1024


def test_environment_sets_media_download() -> None:
    env = {
        **BASE_ENV,
        "WAHOOK_GRAPH_ACCESS_TOKEN": " EAAGsecret-token ",
        "WAHOOK_GRAPH_BASE_URL": "http://127.0.0.1:9999/",
        "WAHOOK_GRAPH_API_VERSION": "v23.0",
        "WAHOOK_MEDIA_MAX_BYTES": "16MiB",
    }
    c = cfg.load({}, env)
    assert c.graph_access_token is not None
    assert c.graph_access_token.reveal() == "EAAGsecret-token"
    assert "EAAGsecret-token" not in repr(c)
    assert c.graph_base_url == "http://127.0.0.1:9999"
    assert c.graph_api_version == "v23.0"
    assert c.media_max_bytes == 16 * 1024 * 1024


def test_token_from_a_file_and_not_both(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("EAAGfrom-file\n")
    c = cfg.load({}, {**BASE_ENV, "WAHOOK_GRAPH_ACCESS_TOKEN_FILE": str(tmp_path / "token")})
    assert c.graph_access_token is not None
    assert c.graph_access_token.reveal() == "EAAGfrom-file"
    flag = cfg.load({"graph_access_token_file": str(tmp_path / "token")}, BASE_ENV)
    assert flag.graph_access_token == c.graph_access_token
    env = {
        **BASE_ENV,
        "WAHOOK_GRAPH_ACCESS_TOKEN": "x",
        "WAHOOK_GRAPH_ACCESS_TOKEN_FILE": str(tmp_path / "token"),
    }
    with pytest.raises(ConfigError, match=r"WAHOOK_GRAPH_ACCESS_TOKEN and .*_FILE"):
        cfg.load({}, env)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WAHOOK_GRAPH_BASE_URL", "graph.facebook.com", "not an http"),
        ("WAHOOK_GRAPH_BASE_URL", "https://graph.facebook.com/?x=1", "not an http"),
        ("WAHOOK_GRAPH_API_VERSION", "24", "not a Graph API version"),
        ("WAHOOK_GRAPH_API_VERSION", "v24.0/me", "not a Graph API version"),
        ("WAHOOK_MEDIA_MAX_BYTES", "lots", "not a size"),
    ],
)
def test_bad_values_are_refused_with_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"{variable}: {message}"):
        cfg.load({}, {**BASE_ENV, variable: value})
