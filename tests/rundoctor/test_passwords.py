"""rundoctor.passwords: the one function that hides a database password, for every package."""

from __future__ import annotations

import pytest

from rundoctor.passwords import redact


@pytest.mark.parametrize(
    ("url", "masked", "dropped"),
    [
        (
            "postgresql://rd:s3cret@db:5432/queue",
            "postgresql://rd:***@db:5432/queue",
            "postgresql://rd@db:5432/queue",
        ),
        (
            "postgresql://rd@db/q?sslmode=require&password=s3cret&connect_timeout=5",
            "postgresql://rd@db/q?sslmode=require&password=***&connect_timeout=5",
            "postgresql://rd@db/q?sslmode=require&connect_timeout=5",
        ),
        (
            "postgresql:///q?host=/run/pg&PASSWORD=s3cret",
            "postgresql:///q?host=/run/pg&PASSWORD=***",
            "postgresql:///q?host=/run/pg",
        ),
        (
            "postgresql://rd@db/q?sslpassword=k3y&sslmode=verify-full",
            "postgresql://rd@db/q?sslpassword=***&sslmode=verify-full",
            "postgresql://rd@db/q?sslmode=verify-full",
        ),
        (
            "postgres://rd:s3%40cr%2Fet@db/q",
            "postgres://rd:***@db/q",
            "postgres://rd@db/q",
        ),
        # An "@" the user forgot to encode: the host is what follows the last one.
        ("postgresql://rd:s3@cret@db/q", "postgresql://rd:***@db/q", "postgresql://rd@db/q"),
        # urlsplit refuses this one ("Invalid IPv6 URL"); its password is hidden all the same.
        ("postgresql://rd:s3cret@[::1/q", "postgresql://rd:***@[::1/q", "postgresql://rd@[::1/q"),
    ],
)
def test_a_url_has_its_password_masked_or_left_out_and_nothing_else_changed(
    url: str, masked: str, dropped: str
) -> None:
    assert redact(url) == masked
    assert redact(url, drop=True) == dropped


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgresql:///q?host=/run/pg&options=-csearch_path%3Dq1",
        "/var/lib/rundoctor/queue.db",
        "sqlite:////var/q.db",
        "postgresql://db/q?passwordless=yes",
    ],
)
def test_a_url_without_a_password_is_left_as_it_is(url: str) -> None:
    assert redact(url) == url and redact(url, drop=True) == url


def test_a_keyword_connection_string_has_its_password_masked_even_when_asked_to_drop_it() -> None:
    text = "host=db password=s3cret user=rd"
    assert redact(text) == redact(text, drop=True) == "host=db password=*** user=rd"


@pytest.mark.parametrize(
    ("message", "url"),
    [
        # libpq quotes the part of a connection string it cannot parse, decoded.
        ('invalid URI query parameter: "password=s3@cret"', "postgresql:///q?password=s3%40cret"),
        ('connection to "rd:s3 cret@db" failed', "postgresql://rd@db/q?password=s3+cret"),
        ("token s3%2Fcret is bad, as is s3/cret", "postgresql://rd:s3%2Fcret@db/q"),
    ],
)
def test_a_message_that_echoes_the_url_loses_every_form_of_its_password(
    message: str, url: str
) -> None:
    hidden = redact(message, url)
    assert "s3" not in hidden and "***" in hidden


def test_the_longest_password_is_hidden_first_so_no_piece_of_it_survives() -> None:
    url = "postgresql://rd:ab@db/q?password=abcdef"
    assert redact("saw abcdef and ab", url) == "saw *** and ***"


def test_a_message_is_untouched_when_the_url_holds_no_password() -> None:
    assert redact("connection refused", "postgresql://rd@db/q") == "connection refused"
