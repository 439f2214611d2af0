"""Signed, unguessable tokens that let the submitter watch their feedback."""

import uuid

from django.core import signing

SALT = "feedback.watch"


def feedback_token(feedback_id: uuid.UUID) -> str:
    return signing.dumps(feedback_id.hex, salt=SALT)


def feedback_id_from_token(token: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(signing.loads(token, salt=SALT))
    except (signing.BadSignature, ValueError, TypeError):
        return None
