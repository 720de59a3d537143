"""Config of the event log's backend: WAHOOK_STORE (sqlite or a Redis URL that may carry
a password), WAHOOK_REDIS_PREFIX and WAHOOK_REDIS_WAIT_REPLICAS."""

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
URL = "redis://:pa55word@redis.internal:6379/0"


def test_sqlite_is_the_default() -> None:
    c = cfg.load({}, BASE_ENV)
    assert c.store_url is None
    assert (c.redis_prefix, c.redis_wait_replicas) == ("wahook", 0)
    assert cfg.load({}, {**BASE_ENV, "WAHOOK_STORE": " SQLite "}).store_url is None


def test_a_redis_url_is_kept_as_a_secret() -> None:
    c = cfg.load({}, {**BASE_ENV, "WAHOOK_STORE": URL, "WAHOOK_REDIS_PREFIX": "wa:{prod}"})
    assert c.store_url is not None
    assert c.store_url.reveal() == URL
    assert "pa55word" not in repr(c)
    assert c.redis_prefix == "wa:{prod}"
    assert cfg.load({"store": "rediss://h:6380/1"}, BASE_ENV).store_url is not None


def test_the_url_can_come_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "store"
    f.write_text(URL + "\n")
    c = cfg.load({}, {**BASE_ENV, "WAHOOK_STORE_FILE": str(f)})
    assert c.store_url is not None
    assert c.store_url.reveal() == URL


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WAHOOK_STORE": "postgres://:pa55word@db/x"}, "not sqlite or a Redis URL"),
        ({"WAHOOK_REDIS_PREFIX": "has space"}, "not a Redis key prefix"),
        ({"WAHOOK_REDIS_WAIT_REPLICAS": "-1"}, "must be 0 or more"),
    ],
)
def test_refusals_say_what_is_wrong_without_echoing_a_url(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        cfg.load({}, {**BASE_ENV, **env})
    assert "pa55word" not in str(refused.value)


def test_wait_replicas() -> None:
    c = cfg.load({}, {**BASE_ENV, "WAHOOK_REDIS_WAIT_REPLICAS": "2"})
    assert c.redis_wait_replicas == 2
