import uuid

from feedback.tokens import feedback_id_from_token, feedback_token


def test_token_round_trips_and_does_not_show_the_bare_id():
    feedback_id = uuid.uuid4()
    token = feedback_token(feedback_id)
    assert str(feedback_id) not in token
    assert feedback_id_from_token(token) == feedback_id


def test_tampered_or_garbage_tokens_are_rejected():
    token = feedback_token(uuid.uuid4())
    other = feedback_token(uuid.uuid4())
    forged = token.split(":")[0] + ":" + other.split(":", 1)[1]
    for bad in [forged, token[:-2] + "xx", "", "garbage", "a:b:c", str(uuid.uuid4())]:
        assert feedback_id_from_token(bad) is None, bad
