import time
import uuid

import pytest
from django.core import signing

from feedback.tokens import SALT, feedback_id_from_token, feedback_token


def test_token_round_trips_and_does_not_show_the_bare_id():
    feedback_id = uuid.uuid4()
    session = {}
    token = feedback_token(feedback_id, session=session)
    assert str(feedback_id) not in token and feedback_id.hex not in token
    assert feedback_id_from_token(token, session=session) == feedback_id


def test_tampered_or_garbage_tokens_are_rejected():
    session = {}
    token = feedback_token(uuid.uuid4(), session=session)
    other = feedback_token(uuid.uuid4(), session=session)
    forged = token.split(":")[0] + ":" + other.split(":", 1)[1]
    for bad in [forged, token[:-2] + "xx", "", "garbage", "a:b:c", str(uuid.uuid4())]:
        assert feedback_id_from_token(bad, session=session) is None, bad


@pytest.mark.parametrize(
    "payload",
    [
        "just-an-id",
        ["not-a-uuid", "key"],
        [uuid.uuid4().hex],
        [uuid.uuid4().hex, 7],
        {"a": 1},
        None,
    ],
)
def test_well_signed_but_malformed_payloads_are_rejected(payload):
    session = {}
    feedback_token(uuid.uuid4(), session=session)  # the session has a watcher key
    token = signing.dumps(payload, salt=SALT)
    assert feedback_id_from_token(token, session=session) is None


def test_a_token_is_only_good_in_the_session_it_was_issued_to():
    feedback_id = uuid.uuid4()
    mine, theirs = {}, {}
    token = feedback_token(feedback_id, session=mine)
    feedback_token(uuid.uuid4(), session=theirs)  # another browser, with its own key
    assert feedback_id_from_token(token, session=theirs) is None
    assert feedback_id_from_token(token, session={}) is None  # no session at all
    assert feedback_id_from_token(token, session=mine) == feedback_id


def test_one_session_keeps_one_key_for_all_its_submissions():
    session = {}
    first, second = uuid.uuid4(), uuid.uuid4()
    first_token = feedback_token(first, session=session)
    second_token = feedback_token(second, session=session)
    assert feedback_id_from_token(first_token, session=session) == first
    assert feedback_id_from_token(second_token, session=session) == second


def test_a_token_expires(settings, monkeypatch):
    settings.FEEDBACK_TOKEN_MAX_AGE = 60
    feedback_id = uuid.uuid4()
    session = {}
    token = feedback_token(feedback_id, session=session)
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now + 59)
    assert feedback_id_from_token(token, session=session) == feedback_id
    monkeypatch.setattr(signing.time, "time", lambda: now + 62)
    assert feedback_id_from_token(token, session=session) is None
