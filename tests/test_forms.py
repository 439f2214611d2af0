from feedback.forms import MESSAGE_MAX_LENGTH, FeedbackForm


def test_valid_input_is_accepted():
    form = FeedbackForm(data={"email": "ada@example.com", "message": "Lovely app."})
    assert form.is_valid(), form.errors


def test_email_and_message_are_required():
    form = FeedbackForm(data={"email": "", "message": ""})
    assert not form.is_valid()
    assert set(form.errors) == {"email", "message"}


def test_email_must_be_an_address():
    form = FeedbackForm(data={"email": "not-an-address", "message": "Hi"})
    assert not form.is_valid()
    assert "email" in form.errors


def test_message_has_a_maximum_length():
    form = FeedbackForm(
        data={"email": "ada@example.com", "message": "x" * (MESSAGE_MAX_LENGTH + 1)}
    )
    assert not form.is_valid()
    assert "message" in form.errors
    form = FeedbackForm(data={"email": "ada@example.com", "message": "x" * MESSAGE_MAX_LENGTH})
    assert form.is_valid()
