import re
from pathlib import Path

import pytest

from feedback.models import Feedback
from feedback.selectors import feedback_status_context

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@pytest.mark.django_db
def test_every_value_the_status_context_builds_is_read_by_a_template():
    feedback = Feedback.objects.create(email="ada@example.com", message="Hi")
    templates = " ".join(path.read_text() for path in TEMPLATES.rglob("*.html"))
    unread = [
        name
        for name in feedback_status_context(feedback=feedback)
        if not re.search(rf"\b{name}\b", templates)
    ]
    assert unread == []
