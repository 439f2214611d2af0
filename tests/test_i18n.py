"""The translations: catalogues compiled from the repository's .po, every string marked and
translated, and each page, status and email in the right language.

The checks on the catalogues run msgfmt from Debian's `gettext` package (.ci/run installs it),
as Django's makemessages and compilemessages do.
"""

import ast
import gettext
import re
import shutil
import subprocess
import sys
import zoneinfo
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.template.base import Lexer, TokenType
from django.template.loader import render_to_string
from django.test import Client
from django.utils import timezone, translation

from feedback import delivery, moves, services, smtp
from feedback.answers import Stopwatch
from feedback.mail import DeliveryError, build_confirmation_email
from feedback.models import Feedback, SendMode
from feedback.selectors import feedback_render_status
from feedback.transitions import MoveName
from feedback.wording import Failure, Reason

ROOT = Path(__file__).resolve().parents[1]
# Every language's catalogue (English, the source language, has none).
CATALOGUES = sorted((ROOT / "locale").glob("*/LC_MESSAGES/django.po"))
PO = ROOT / "locale" / "pt_BR" / "LC_MESSAGES" / "django.po"
each_catalogue = pytest.mark.parametrize("po", CATALOGUES, ids=lambda po: po.parts[-3])
# What makemessages reads: the project minus what is not the app (the Makefile's
# `messages` target ignores the same).
NOT_THE_APP = {".git", ".venv", "tests", "devtools", "docs", "deploy", "staticfiles", "var"}
APP_PACKAGES = [
    "django_celery",
    "feedback",
    "health",
    "livetasks",
    "outbox",
    "realtime",
    "web",
    "workers",
]

PT = {"HTTP_ACCEPT_LANGUAGE": "pt-BR,pt;q=0.9,en;q=0.5"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}


def need_gettext() -> None:
    if shutil.which("msgfmt") is None:
        pytest.fail("msgfmt is missing: apt-get install gettext (.ci/run installs it)")


def mo_catalogue(path: Path) -> dict:
    with path.open("rb") as file:
        return dict(gettext.GNUTranslations(file)._catalog)


# -- The catalogues ------------------------------------------------------------------


def test_brazilian_portuguese_is_there():
    assert PO in CATALOGUES
    assert [code for code, _ in settings.LANGUAGES] == ["en", "pt-br"]


@each_catalogue
def test_the_committed_mo_is_compiled_from_the_committed_po(po, tmp_path):
    need_gettext()
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(fresh), str(po)], check=True)
    committed = po.with_suffix(".mo")
    assert mo_catalogue(committed) == mo_catalogue(fresh), "run `make messages`, commit the .mo"


@each_catalogue
def test_every_string_is_translated_and_none_is_fuzzy(po):
    catalogue = polib.pofile(str(po))
    assert not catalogue.metadata_is_fuzzy  # msgfmt would leave a fuzzy header out
    plural_forms = re.search(r"nplurals=(\d+);", catalogue.metadata.get("Plural-Forms", ""))
    assert plural_forms, "the header says how many plural forms the language has"
    assert catalogue.untranslated_entries() == [] and catalogue.fuzzy_entries() == []
    forms = int(plural_forms.group(1))
    plural = [e.msgid for e in catalogue if e.msgid_plural and len(e.msgstr_plural) != forms]
    assert plural == []


@each_catalogue
def test_the_po_holds_exactly_the_strings_marked_in_the_app(po, tmp_path):
    """makemessages, run on a copy of the app without the .po, finds the same msgids."""
    need_gettext()
    copy = tmp_path / "app"
    copy.mkdir()
    for item in ROOT.iterdir():
        if item.name in NOT_THE_APP or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, copy / item.name, ignore=shutil.ignore_patterns("__pycache__"))
        elif item.suffix in {".py", ".html", ".txt"}:
            shutil.copy(item, copy / item.name)
    language = po.parts[-3]
    fresh = copy / "locale" / language / "LC_MESSAGES" / "django.po"
    fresh.unlink()
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", language, "--verbosity", "0"],
        cwd=copy,
        check=True,
    )
    found = {(e.msgctxt, e.msgid): e for e in polib.pofile(str(fresh)) if not e.obsolete}
    committed = {(e.msgctxt, e.msgid): e for e in polib.pofile(str(po)) if not e.obsolete}
    assert sorted(set(found) - set(committed), key=str) == [], "marked but not in the .po"
    assert sorted(set(committed) - set(found), key=str) == [], "in the .po but no longer marked"
    plurals = {key: entry.msgid_plural for key, entry in found.items()}
    assert plurals == {key: entry.msgid_plural for key, entry in committed.items()}


# -- Nothing left unmarked -----------------------------------------------------------

# Attributes a person reads or hears.
SHOWN_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description"}
LETTER = re.compile(r"[^\W\d_]")
# A literal a filter shows in place of a value (`|default:"..."`) is text too.
SHOWN_LITERAL = re.compile(r"\|default(?:_if_none)?:(\"[^\"]*\"|'[^']*')")
NOT_TEXT_LITERALS = {'"UTC"', '""', "''"}


def template_outside_translation(source: str) -> str:
    """The template with translated text, comments and tags taken out: what is left of
    its words is what a person would read untranslated. A variable stands in as "§"."""
    kept = []
    skipping_until = None
    for token in Lexer(source).tokenize():
        if skipping_until:
            if token.token_type == TokenType.BLOCK and token.contents.split()[0] == skipping_until:
                skipping_until = None
            continue
        if token.token_type == TokenType.TEXT:
            kept.append(token.contents)
        elif token.token_type == TokenType.VAR:
            kept.append("§")
        elif token.token_type == TokenType.BLOCK:
            name = token.contents.split()[0]
            if name in ("blocktranslate", "blocktrans"):
                skipping_until = "end" + name
                kept.append("§")
            elif name == "comment":
                skipping_until = "endcomment"
            elif name in ("translate", "trans", "url"):
                kept.append("§")
    return "".join(kept)


class ShownText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shown: list[str] = []
        self.hidden_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.hidden_depth += 1
        for name, value in attrs:
            if value and (name in SHOWN_ATTRIBUTES or name.startswith("data-label")):
                self.shown.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.hidden_depth -= 1

    def handle_data(self, data):
        if not self.hidden_depth:
            self.shown.append(data)


def template_files() -> list[Path]:
    files = list((ROOT / "templates").rglob("*.html")) + list((ROOT / "templates").rglob("*.txt"))
    for package in APP_PACKAGES:
        files += (ROOT / package).glob("templates/**/*.html")
    return sorted(files)


@pytest.mark.parametrize("path", template_files(), ids=lambda path: path.name)
def test_no_text_in_a_template_is_outside_a_translate_tag(path):
    source = path.read_text(encoding="utf-8")
    parser = ShownText()
    parser.feed(template_outside_translation(source))
    parser.close()
    untranslated = [text.strip() for text in parser.shown if LETTER.search(text)]
    assert untranslated == []
    literals = [
        literal
        for literal in SHOWN_LITERAL.findall(source)
        if literal not in NOT_TEXT_LITERALS and LETTER.search(literal)
    ]
    assert literals == []


def test_the_template_check_finds_untranslated_text():
    """The check above, on a template that leaves words out (so it can fail)."""
    source = (
        '{% load i18n %}<p title="Hover text">{% translate "Fine" %} Left out {{ x }}</p>'
        "{# a comment #}{% comment %}Also fine{% endcomment %}<button>{{ n }} s</button>"
        "{% blocktranslate %}Fine {{ y }}{% endblocktranslate %}"
        '<b aria-label="{% translate "x" %}"></b>'
    )
    parser = ShownText()
    parser.feed(template_outside_translation(source))
    assert [text.strip() for text in parser.shown if LETTER.search(text)] == [
        "Hover text",
        "§ Left out §",
        "§ s",
    ]


# Calls and arguments whose text a person reads (forms, admin, email, the status reasons).
SHOWN_CALLS = {"ValidationError", "add_error", "message_user", "DeliveryError"}
SHOWN_KEYWORDS = {"label", "help_text", "verbose_name", "verbose_name_plural", "description"}
SHOWN_KEYWORDS |= {"subject"}


def bare_text(node: ast.AST) -> bool:
    """A string literal or f-string with words, not wrapped in a gettext call."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(LETTER.search(node.value))
    return isinstance(node, ast.JoinedStr)


def unmarked_strings(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            args = list(node.args)
            if name in SHOWN_CALLS:
                lines += [arg.lineno for arg in args if bare_text(arg)]
            if name.endswith("Field") and args and bare_text(args[0]):
                lines.append(args[0].lineno)  # a model field's verbose name
            lines += [
                kw.value.lineno
                for kw in node.keywords
                if kw.arg in SHOWN_KEYWORDS and bare_text(kw.value)
            ]
        if isinstance(node, ast.ClassDef) and any(
            getattr(base, "attr", getattr(base, "id", "")) in {"TextChoices", "IntegerChoices"}
            for base in node.bases
        ):
            for item in node.body:
                value = getattr(item, "value", None)
                if isinstance(value, ast.Tuple) and len(value.elts) > 1:
                    lines += [elt.lineno for elt in value.elts[1:] if bare_text(elt)]
        if isinstance(node, ast.Assign) and any(
            getattr(target, "id", "") in {"verbose_name", "verbose_name_plural"}
            for target in node.targets
        ):
            lines += [node.value.lineno] if bare_text(node.value) else []
    return lines


def python_files() -> list[Path]:
    return sorted(
        path
        for package in APP_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    )


@pytest.mark.parametrize("path", python_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_text_shown_to_a_person_is_left_unmarked_in_python(path):
    assert unmarked_strings(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_python_check_finds_unmarked_text():
    source = (
        "class S(models.TextChoices):\n    A = 'a', 'Shown'\n"
        "raise ValidationError('Bad value')\n"
        "raise ValidationError(_('Fine'))\n"
        "x = models.CharField('name', max_length=3)\n"
        "self.message_user(request, f'{n} done')\n"
    )
    assert unmarked_strings(ast.parse(source)) == [2, 3, 5, 6]


# -- The pages, in the browser's language or the chosen one -------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "lang", "texts"),
    [
        (EN, "en", ["Send us feedback", "Your email address", "With Celery", "Skip to content"]),
        (PT, "pt-br", ["Mande seu feedback", "Seu endereço de e-mail", "Com Celery", "Pular"]),
    ],
)
def test_the_page_speaks_the_browsers_language(headers, lang, texts):
    response = Client(**headers).get("/")
    html = response.content.decode()
    assert f'<html lang="{lang}">' in html
    assert response["Content-Language"] == lang
    for text in texts:
        assert text in html


@pytest.mark.django_db
def test_an_unknown_language_gets_english():
    html = Client(HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9").get("/").content.decode()
    assert '<html lang="en">' in html and "Send us feedback" in html


@pytest.mark.django_db
def test_the_selector_switches_the_language_and_it_sticks():
    client = Client(enforce_csrf_checks=True, **EN)
    page = client.get("/").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    answer = client.post(
        "/i18n/setlang/", {"language": "pt-br", "next": "/", "csrfmiddlewaretoken": csrf}
    )
    assert answer.status_code == 302 and answer["Location"] == "/"
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "pt-br"
    assert "Mande seu feedback" in client.get("/").content.decode()  # Accept-Language says en
    assert '<option value="pt-br" lang="pt-br" selected>' in client.get("/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "texts"),
    [
        (EN, ["Nothing here", "Back to the feedback form"]),
        (PT, ["Não tem nada aqui", "Voltar ao formulário de feedback", 'lang="pt-br"']),
    ],
)
def test_the_error_pages_speak_it_too(headers, texts):
    response = Client(**headers).get("/feedback/forged-token/")
    assert response.status_code == 404
    for text in texts:
        assert text in response.content.decode()


@pytest.mark.django_db
def test_a_too_large_body_is_refused_in_portuguese():
    response = Client(**PT).generic(
        "POST", "/", b"x", CONTENT_TYPE="text/plain", CONTENT_LENGTH=str(50 * 1024 * 1024)
    )
    assert response.status_code == 413
    assert "O que você enviou é maior do que este site aceita" in response.content.decode()


@pytest.mark.django_db
def test_form_errors_are_translated():
    html = Client(**PT).post("/", {"email": "not an address", "message": ""}).content.decode()
    assert "Informe um endereço de e-mail válido." in html
    assert "Este campo é obrigatório." in html  # Django's own catalogue


# -- A feedback keeps its language -------------------------------------------------


def pt_feedback(**fields) -> Feedback:
    return services.feedback_create(
        email="ana@example.com.br",
        message="Olá\nTudo bem?",
        enqueue=False,
        language="pt-br",
        time_zone="America/Sao_Paulo",
        **fields,
    )


@pytest.mark.django_db
def test_the_view_stores_the_language_and_time_zone_of_the_page(settings):
    settings.FEEDBACK_RATE_LIMIT = None
    client = Client(**PT)
    client.cookies["tz"] = "America/Sao_Paulo"
    client.post("/", {"email": "ana@example.com", "message": "Oi", "mode": "async"})
    client.cookies["tz"] = "../../etc/passwd"  # not a zone: UTC
    client.post("/", {"email": "bia@example.com", "message": "Oi", "mode": "async"})
    rows = dict(Feedback.objects.values_list("email", "time_zone"))
    assert rows == {"ana@example.com": "America/Sao_Paulo", "bia@example.com": "UTC"}
    assert set(Feedback.objects.values_list("language", flat=True)) == {"pt-br"}


@pytest.mark.django_db
def test_the_email_is_in_the_feedbacks_language_whatever_is_active():
    with translation.override("en"):
        email = build_confirmation_email(feedback=pt_feedback())
        assert translation.get_language() == "en"
    html = email.alternatives[0].content
    assert email.subject == "Obrigado pelo seu feedback"
    assert email.body.startswith("Olá,\n\nobrigado pelo seu feedback.")
    assert "> Olá\n> Tudo bem?" in email.body and "A equipe de feedback" in email.body
    assert '<html lang="pt-br">' in html and "Lemos todas as mensagens" in html


@pytest.mark.django_db
def test_the_status_is_rendered_in_its_readers_language_and_its_senders_time_zone():
    feedback = pt_feedback()
    at = timezone.now().replace(microsecond=0) + timedelta(seconds=30)
    delivery.feedback_claim(feedback_id=feedback.pk)
    error = DeliveryError(smtp.describe_send_error(OSError()), cause=OSError(), transient=True)
    delivery.feedback_mark_retrying(
        feedback_id=feedback.pk, reason=error.reason_for(retrying=True), next_retry_at=at
    )
    feedback.refresh_from_db()
    local = timezone.localtime(at, timezone=zoneinfo.ZoneInfo("America/Sao_Paulo"))
    shown = f'<time datetime="{local.isoformat()}">{local:%H:%M:%S} America/Sao_Paulo</time>'
    with translation.override("pt-br"):
        html = feedback_render_status(feedback=feedback)
    assert "Tentando de novo" in html
    assert (
        "A tentativa 1 não deu certo: Não foi possível falar com o servidor de e-mail. "
        "É temporário: vamos tentar de novo."
    ) in html
    assert f"Tentativa 2 às {shown}." in html
    assert "Parar de tentar" in html and 'aria-label="Linha do tempo"' in html
    # The same row, read by an English page: English, the sender's time zone still.
    with translation.override("en"):
        html = feedback_render_status(feedback=feedback)
    assert (
        "Attempt 1 did not go through: The mail server could not be reached. "
        "This is temporary: it will be tried again."
    ) in html
    assert f"Attempt 2 at {shown}." in html and "Tentando" not in html


@pytest.mark.django_db
def test_numbers_follow_the_language():
    feedback = pt_feedback()
    moves.feedback_move(MoveName.CANCEL, feedback_id=feedback.pk)
    event = feedback.events.first()
    event.at = feedback.created_at + timedelta(milliseconds=3012)
    event.save()
    feedback.events.create(status="cancelled", at=feedback.created_at + timedelta(seconds=4.5))
    with translation.override("pt-br"):
        html = feedback_render_status(feedback=Feedback.objects.get(pk=feedback.pk))
    assert "+4,50 s" in html and "(desfeito)" in html
    with translation.override("pt-br"):
        page = render_to_string(
            "feedback/detail.html#watch",
            {
                "feedback": feedback,
                "token": "t",
                "answered": Stopwatch(3012),
                "mode": SendMode.SYNC,
                "SendMode": SendMode,
            },
        )
    assert "respondido em <strong>3.012 ms</strong>" in page
    assert "do jeito antigo (antes)" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (EN, "You have sent several messages in a short time. Please wait"),
        (PT, "Você enviou várias mensagens em pouco tempo. Espere"),
    ],
)
def test_over_the_rate_limit_htmx_gets_its_form_back_with_the_reason_in_its_language(
    settings, redis_url, headers, reason
):
    from tests.test_limits import forget_the_counters

    settings.FEEDBACK_RATE_LIMIT = "1/h"
    forget_the_counters(redis_url, settings.REDIS_PREFIX)
    client = Client(REMOTE_ADDR="10.45.0.1", **headers)
    data = {"email": "ana@example.com", "message": "Oi", "mode": "async"}
    htmx = {"HX-Request": "true"}
    assert client.post("/", data, headers=htmx).status_code == 200
    response = client.post("/", {**data, "message": "De novo"}, headers=htmx)
    assert response.status_code == 429
    html = response.content.decode()
    assert html.lstrip().startswith('<form id="feedback-form"')
    assert re.search(r'<ul class="errorlist nonfield">\s*<li>' + re.escape(reason), html)
    assert "De novo" in html
    page = Client(REMOTE_ADDR="10.45.0.1", **headers).post("/", data)  # without htmx: the page
    assert page.status_code == 429 and reason.split(".")[0] in page.content.decode()


@pytest.mark.django_db
def test_the_admin_speaks_portuguese_too(admin_client):
    feedback = pt_feedback()
    delivery.feedback_mark_failed(feedback_id=feedback.pk, reason=Failure(Reason.NOT_SENT))
    admin_client.defaults.update(PT)
    html = admin_client.get("/admin/feedback/feedback/").content.decode()
    assert "Reenviar todos os selecionados" in html and "Exportar como CSV" in html
    assert "Por idioma" in html and "Português do Brasil" in html
    assert "Falhou" in html and "Na fila" in html  # the status filter's choices
    answer = admin_client.post(
        f"/admin/feedback/feedback/{feedback.pk}/change/",
        {"CHANGE_FORM-action": "resend", "_selected_action": str(feedback.pk)},
        follow=True,
    )
    assert "1 confirmação voltou para a fila." in answer.content.decode()


def test_a_time_zone_cookie_is_checked_by_loading_that_zone_alone(monkeypatch):
    """Never by listing the zone database (a second of CPU, once per process)."""
    import zoneinfo

    from web.time_zone import time_zone_name

    def listed():
        raise AssertionError("the whole zone database was read")

    monkeypatch.setattr(zoneinfo, "available_timezones", listed)
    time_zone_name.cache_clear()
    assert time_zone_name("America/Sao_Paulo") == "America/Sao_Paulo"
    assert time_zone_name("America/Argentina/Buenos_Aires") == "America/Argentina/Buenos_Aires"
    assert time_zone_name("Etc/GMT+3") == "Etc/GMT+3"
    for not_a_zone in ("../../etc/passwd", "/etc/passwd", "America", "Foo/Bar", "", None, "x" * 65):
        assert time_zone_name(not_a_zone) == ""


# -- Every card text, through the socket, in the socket's language ------------------

SOCKET_SESSION: dict = {}
ZONE = "America/Sao_Paulo"
SERVER_TEXT = "4.3.0 Try again later"
UNIT = re.compile(r"(?<!\w)m?s(?!\w)")


def page_socket(accept_language: str):
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from realtime.routing import websocket_urlpatterns

    router = URLRouter(websocket_urlpatterns)

    async def with_session(scope, receive, send):
        return await router({**scope, "session": SOCKET_SESSION}, receive, send)

    headers = [(b"accept-language", accept_language.encode())]
    return WebsocketCommunicator(with_session, "/ws/watch/", headers=headers)


def card_of_every_kind() -> list[Feedback]:
    """Cards submitted in English, waiting to go through every state a card can show."""
    return [
        services.feedback_create(
            email=f"card-{n}@example.com",
            message="Hi",
            enqueue=False,
            undo_seconds=60 if n == 0 else 0,  # the first can be undone
            time_zone=ZONE,
        )
        for n in range(3 + len(Reason))
    ]


def every_card_state(cards: list[Feedback]) -> None:
    """Each card through its states, every step, reason and outcome, each move published."""
    from feedback.wording import Outcome

    undone, sent, stopped, *failed = cards
    services.feedback_cancel(feedback_id=undone.pk)  # Undo while queued
    delivery.feedback_claim(feedback_id=sent.pk)
    for progress, step in enumerate(delivery.SEND_STEPS[1:], start=1):
        delivery.feedback_mark_progress(feedback_id=sent.pk, step=step, progress=progress * 33)
    delivery.feedback_mark_sent(feedback_id=sent.pk)
    delivery.feedback_claim(feedback_id=stopped.pk)
    retry = Failure(Reason.SMTP_DATA, Outcome.RETRYING, smtp_code=451, smtp_text=SERVER_TEXT)
    at = timezone.now() + timedelta(minutes=1)
    delivery.feedback_mark_retrying(feedback_id=stopped.pk, reason=retry, next_retry_at=at)
    services.feedback_cancel(feedback_id=stopped.pk)  # Stop trying
    outcomes = [Outcome.PERMANENT, Outcome.FINAL, Outcome.GAVE_UP, Outcome.NONE]
    for number, (card, reason) in enumerate(zip(failed, Reason, strict=True)):
        smtp = {"smtp_code": 550, "smtp_text": SERVER_TEXT} if reason.startswith("smtp") else {}
        outcome = outcomes[number % len(outcomes)]
        attempts = 2 if outcome == Outcome.GAVE_UP else None
        delivery.feedback_claim(feedback_id=card.pk)
        failure = Failure(reason, outcome, attempts=attempts, **smtp)
        delivery.feedback_mark_failed(feedback_id=card.pk, reason=failure)


def words(frame: str, data: list[str]) -> set[str]:
    """What a person reads in a frame, data (an address, the server's text, a zone) taken out."""
    parser = ShownText()
    parser.feed(frame)
    shown = set()
    for text in parser.shown:
        for value in data:
            text = text.replace(value, "")
        text = UNIT.sub("", text)  # seconds and milliseconds: "s" and "ms" in both
        if LETTER.search(text):
            shown.add(" ".join(text.split()))
    return shown


async def frames_until_final(ws, cards: int) -> dict[tuple[str, str], str]:
    """Every status frame, by (card id, version), until each card is final."""
    frames, finals = {}, 0
    while finals < cards:
        frame = await ws.receive_from(timeout=10)
        if 'id="feedback-queue"' in frame:
            continue
        key = (re.search(r'id="status-([^"]+)"', frame).group(1),
               re.search(r'data-version="(\d+)"', frame).group(1))  # fmt: skip
        frames[key] = frame
        finals += 'data-final="true"' in frame
    return frames


@pytest.mark.django_db(transaction=True)
async def test_every_card_text_a_socket_sends_is_in_its_pages_language():
    """A Portuguese page and an English one watch cards submitted in English while they go
    through every state, step, reason and outcome: nothing the Portuguese page is sent
    reads as the English page's (the server's own words and the data aside)."""
    from asgiref.sync import sync_to_async

    from feedback.tokens import feedback_token

    cards = await sync_to_async(card_of_every_kind)()
    tokens = [feedback_token(card.pk, session=SOCKET_SESSION) for card in cards]
    portuguese, english = page_socket("pt-BR,pt;q=0.9"), page_socket("en-US,en;q=0.9")
    for ws in (portuguese, english):
        assert (await ws.connect())[0]
        for token in tokens:
            await ws.send_to(text_data=f"watch feedback/{token}")
    # Each has the queued snapshot of every card before anything moves.
    seen = {ws: await frames_until_queued(ws, len(cards)) for ws in (portuguese, english)}
    await sync_to_async(every_card_state)(cards)
    for ws in (portuguese, english):
        seen[ws].update(await frames_until_final(ws, len(cards)))
        await ws.disconnect()

    assert seen[portuguese].keys() == seen[english].keys()
    assert len(seen[portuguese]) > 3 * len(cards)
    data = [f"card-{n}@example.com" for n in range(len(cards))] + [SERVER_TEXT, ZONE, "UTC"]
    for key, frame in seen[portuguese].items():
        ours, theirs = words(frame, data), words(seen[english][key], data)
        assert ours, frame
        assert ours & theirs == set(), frame
    badges = {re.search(r'status__badge">([^<]+)', f).group(1) for f in seen[portuguese].values()}
    assert badges == {"Na fila", "Enviando", "Enviado", "Tentando de novo", "Falhou", "Cancelado"}


async def frames_until_queued(ws, cards: int) -> dict[tuple[str, str], str]:
    frames = {}
    while len(frames) < cards:
        frame = await ws.receive_from(timeout=10)
        if 'data-status="queued"' in frame:
            key = (re.search(r'id="status-([^"]+)"', frame).group(1),
                   re.search(r'data-version="(\d+)"', frame).group(1))  # fmt: skip
            frames[key] = frame
    return frames
