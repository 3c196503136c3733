"""Unit tests: settings from the environment."""

from __future__ import annotations

import pytest
from feedamp.config import Settings


def test_defaults():
    s = Settings.from_env({})
    assert s.kafka_bootstrap_servers == "localhost:9092"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.topics.posts == "posts" and s.topics.dead_letter == "dead-letter"
    assert s.feed_cap == 800


def test_overrides():
    s = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "REDIS_URL": "redis://r:6380/2",
        "FEEDAMP_FEED_CAP": "100",
        "FEEDAMP_TOPIC_POSTS": "clips",
        "FEEDAMP_TOPIC_PREFIX": "stage-",
        "FEEDAMP_KEY_PREFIX": "fx:",
    })  # fmt: skip
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.redis_url == "redis://r:6380/2"
    assert s.feed_cap == 100
    assert s.topics.posts == "stage-clips" and s.topics.graph == "stage-graph"
    assert s.key_prefix == "fx:"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FEEDAMP_FEED_CAP": "lots"}, "FEEDAMP_FEED_CAP must be an integer"),
        ({"FEEDAMP_FEED_CAP": "0"}, "FEEDAMP_FEED_CAP must be >= 1"),
        ({"FEEDAMP_BATCH_WITHIN": "0"}, "FEEDAMP_BATCH_WITHIN must be > 0"),
        ({"FEEDAMP_KEY_PREFIX": "a{b}"}, "FEEDAMP_KEY_PREFIX"),
        ({"FEEDAMP_CAP_RATE_MAX": "-3"}, "FEEDAMP_CAP_RATE_MAX must be >= 0, got -3"),
        ({"FEEDAMP_CAP_BRAKE_WINDOW_MS": "0"}, "FEEDAMP_CAP_BRAKE_WINDOW_MS must be >= 1"),
        ({"FEEDAMP_WEB_PORT": "99999"}, "FEEDAMP_WEB_PORT must be 0..65535"),
        ({"FEEDAMP_MAX_TEXT_CHARS": "-1"}, "FEEDAMP_MAX_TEXT_CHARS must be >= 1"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_to_env_round_trips():
    from feedamp.config import Caps, Topics

    s = Settings(
        kafka_bootstrap_servers="k:1", redis_url="redis://r/3", feed_cap=42, batch_within=0.5,
        topics=Topics().prefixed("x-"), caps=Caps(rate_max=9, friction=True), data_dir="/d",
    )  # fmt: skip
    assert Settings.from_env(s.to_env()) == s


def test_caps_from_env():
    s = Settings.from_env({"FEEDAMP_CAP_RATE_MAX": "7", "FEEDAMP_CAP_FRICTION": "on"})
    assert s.caps.rate_max == 7 and s.caps.friction is True
    with pytest.raises(ValueError, match="FEEDAMP_CAP_FRICTION must be true or false"):
        Settings.from_env({"FEEDAMP_CAP_FRICTION": "maybe"})


def test_unknown_variables_are_found_with_the_closest_name():
    from feedamp.config import unknown_variables

    env = {"FEEDAMP_CAP_RATE_MXA": "3", "FEEDAMP_FEED_CAP": "9", "FEEDAMP_LOG_FORMAT": "json",
           "FEEDAMP_TOPIC_PREFIX": "x", "FEEDAMP_WHATEVER_ELSE": "1", "HOME": "/"}  # fmt: skip
    assert unknown_variables(env) == [("FEEDAMP_CAP_RATE_MXA", "FEEDAMP_CAP_RATE_MAX"),
                                      ("FEEDAMP_WHATEVER_ELSE", None)]  # fmt: skip
