"""The mail transports, template rendering, the fake SendGrid and the outbox page."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from email import policy
from email.parser import BytesParser

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from flask import Flask

from preference_center import config
from preference_center.mail import (
    Envelope,
    MessageBatch,
    OutboxTransport,
    SendGridTransport,
    SmtpTransport,
    TemplateError,
    TransportError,
    check,
    get_transport,
    render,
)
from preference_center.mail import views as outbox_views

try:  # tests/ may or may not become a package
    from tests.fake_sendgrid import FakeSendGrid
except ImportError:  # pragma: no cover
    from fake_sendgrid import FakeSendGrid

UNSUB = "-pc_unsub-"


def make_batch(count: int, **overrides) -> MessageBatch:
    """A marketing-style batch: a placeholder in subject, bodies and List-Unsubscribe."""
    envelopes = [
        Envelope(
            to=f"user{i}@example.org",
            substitutions={UNSUB: f"https://pc.example/u/{i}", "-name-": f"User {i}"},
            headers={"List-Unsubscribe": f"<{UNSUB}>"},
            custom_args={"delivery_id": str(i)},
        )
        for i in range(count)
    ]
    fields = dict(
        from_email="Preference Center <news@example.com>",
        subject="Hello -name-",
        text=f"Hi -name-\nUnsubscribe: {UNSUB}\n",
        html=f'<p>Hi -name-</p><p><a href="{UNSUB}">Unsubscribe</a></p>',
        envelopes=envelopes,
        headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        categories=["newsletter"],
    )
    fields.update(overrides)
    return MessageBatch(**fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


# -- choosing a transport -----------------------------------------------------

def test_get_transport_builds_the_configured_transport(tmp_path):
    outbox = get_transport({"PC_MAIL_TRANSPORT": "outbox", "PC_INSTANCE_PATH": str(tmp_path)})
    assert isinstance(outbox, OutboxTransport) and outbox.folder == tmp_path / "outbox"
    smtp = get_transport({"PC_MAIL_TRANSPORT": "smtp", "PC_SMTP_URL": "smtps://u:p%40ss@mail.example:2465"})
    assert isinstance(smtp, SmtpTransport)
    assert (smtp.host, smtp.port, smtp.implicit_tls, smtp.password) == ("mail.example", 2465, True, "p@ss")
    sendgrid = get_transport({**config.load(tmp_path), "PC_MAIL_TRANSPORT": "sendgrid", "PC_SENDGRID_API_KEY": "SG.x",
                              "PC_SENDGRID_API_HOST": "http://127.0.0.1:1"})
    assert isinstance(sendgrid, SendGridTransport) and sendgrid.max_batch == 1000


def test_get_transport_refuses_unknown_names_and_sendgrid_without_key(tmp_path):
    with pytest.raises(ValueError, match="outbox, smtp, sendgrid"):
        get_transport({"PC_MAIL_TRANSPORT": "pigeon"})
    with pytest.raises(ValueError, match="API key"):
        get_transport({**config.load(tmp_path), "PC_MAIL_TRANSPORT": "sendgrid", "PC_SENDGRID_API_KEY": None})


# -- outbox ---------------------------------------------------------------------

def test_outbox_writes_one_parseable_eml_per_envelope_with_its_own_substitutions(tmp_path):
    folder = tmp_path / "outbox"
    results = OutboxTransport(folder).send(make_batch(2))

    assert [r.to for r in results] == ["user0@example.org", "user1@example.org"]
    assert all(r.ok for r in results)
    files = sorted(folder.iterdir())
    assert len(files) == 2 and all(f.suffix == ".eml" for f in files)  # no temp files left behind
    by_to = {str(m["To"]): m for m in (parse(f.read_bytes()) for f in files)}
    msg = by_to["user1@example.org"]
    assert msg["Subject"] == "Hello User 1"
    assert msg["From"] == "Preference Center <news@example.com>"
    assert msg["List-Unsubscribe"] == "<https://pc.example/u/1>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"] and msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content() == "Hi User 1\nUnsubscribe: https://pc.example/u/1\n"
    assert '<a href="https://pc.example/u/1">' in msg.get_body(("html",)).get_content()
    assert {r.provider_message_id for r in results} == {str(m["Message-ID"]) for m in by_to.values()}


def test_outbox_fails_only_the_envelope_whose_header_would_break(tmp_path):
    batch = make_batch(2)
    batch.envelopes[0].substitutions[UNSUB] = "https://x\r\nBcc: victim@example.org"
    results = OutboxTransport(tmp_path).send(batch)
    assert [r.ok for r in results] == [False, True]
    assert results[0].error
    assert len(list(tmp_path.glob("*.eml"))) == 1


def test_transports_refuse_headers_they_set_themselves(tmp_path):
    batch = make_batch(1, headers={"Subject": "forged"})
    with pytest.raises(ValueError, match="Subject"):
        OutboxTransport(tmp_path).send(batch)


# -- smtp -----------------------------------------------------------------------

class Mailbox:
    """aiosmtpd handler that keeps what it accepts and refuses chosen recipients."""

    def __init__(self, refuse: set[str] = frozenset()) -> None:
        self.refuse = set(refuse)
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.authenticated: list[bool] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        self.authenticated.append(bool(session.authenticated))
        return "250 Message accepted"


def _authenticate(server, session, envelope, mechanism, auth_data):
    ok = (auth_data.login, auth_data.password) == (b"mailer", b"s3cret")
    # handled=False: let aiosmtpd answer 535 itself on failure.
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server():
    mailbox = Mailbox(refuse={"nobody@example.org"})
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(),
        authenticator=_authenticate, auth_require_tls=False,
    )
    controller.start()
    yield controller, mailbox
    controller.stop()


def test_smtp_delivers_each_envelope_and_a_refused_recipient_fails_alone(smtp_server):
    controller, mailbox = smtp_server
    batch = make_batch(3)
    batch.envelopes[1].to = "nobody@example.org"
    transport = SmtpTransport(f"smtp://mailer:s3cret@127.0.0.1:{controller.port}")

    results = transport.send(batch)

    assert [r.ok for r in results] == [True, False, True]
    assert "550" in results[1].error
    assert [rcpts for _, rcpts, _ in mailbox.messages] == [["user0@example.org"], ["user2@example.org"]]
    assert mailbox.authenticated == [True, True]
    mail_from, _, data = mailbox.messages[1]
    assert mail_from == "news@example.com"
    msg = parse(data)
    assert msg["Subject"] == "Hello User 2"
    assert msg["List-Unsubscribe"] == "<https://pc.example/u/2>"
    assert msg["Message-ID"] == results[2].provider_message_id
    assert "https://pc.example/u/2" in msg.get_body(("html",)).get_content()


def test_smtp_wrong_password_is_not_retryable(smtp_server):
    controller, mailbox = smtp_server
    with pytest.raises(TransportError) as info:
        SmtpTransport(f"smtp://mailer:wrong@127.0.0.1:{controller.port}").send(make_batch(1))
    assert info.value.retryable is False and mailbox.messages == []


def test_smtp_unreachable_server_is_retryable():
    with pytest.raises(TransportError) as info:
        SmtpTransport(f"smtp://127.0.0.1:{free_port()}", timeout=2).send(make_batch(1))
    assert info.value.retryable is True and info.value.ambiguous is False


# -- sendgrid ------------------------------------------------------------------

@pytest.fixture
def fake():
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def sendgrid(fake: FakeSendGrid, sleeps: list[float], **kwargs) -> SendGridTransport:
    kwargs.setdefault("timeout", 5.0)
    return SendGridTransport("SG.test-key", fake.url, sleep=sleeps.append, **kwargs)


def test_sendgrid_splits_2500_envelopes_into_three_requests_and_each_recipient_arrives_once(fake, sleeps):
    results = sendgrid(fake, sleeps).send(make_batch(2500))

    assert [len(p["personalizations"]) for p in fake.payloads] == [1000, 1000, 500]
    assert fake.requests == 3 and sleeps == []
    accepted = fake.accepted
    assert sorted(a.to[0] for a in accepted) == sorted(f"user{i}@example.org" for i in range(2500))
    assert len(accepted) == 2500
    one = next(a for a in accepted if a.to == ["user1234@example.org"])
    assert one.subject == "Hello User 1234"
    assert one.content["text/plain"] == "Hi User 1234\nUnsubscribe: https://pc.example/u/1234\n"
    assert '<a href="https://pc.example/u/1234">' in one.content["text/html"]
    assert one.custom_args == {"delivery_id": "1234"}
    assert one.headers == {
        "List-Unsubscribe": "<https://pc.example/u/1234>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert one.categories == ["newsletter"]
    assert fake.payloads[0]["from"] == {"email": "news@example.com", "name": "Preference Center"}
    # Every envelope of a request carries that request's X-Message-Id.
    assert all(r.ok for r in results) and [r.to for r in results][:2] == ["user0@example.org", "user1@example.org"]
    assert len({r.provider_message_id for r in results}) == 3
    assert results[1234].provider_message_id == one.message_id


def test_sendgrid_waits_for_the_rate_limit_reset_then_succeeds(fake):
    waited: list[float] = []

    def really_sleep(seconds: float) -> None:
        waited.append(seconds)
        time.sleep(seconds)

    fake.script([(429, {"X-RateLimit-Reset": str(int(time.time()) + 1)})])
    started = time.monotonic()
    results = SendGridTransport("SG.k", fake.url, sleep=really_sleep).send(make_batch(2))

    assert all(r.ok for r in results) and fake.requests == 2 and len(fake.accepted) == 2
    assert len(waited) == 1 and 0 <= waited[0] <= 1.0
    assert time.monotonic() - started >= waited[0]


def test_sendgrid_retries_server_errors_with_growing_backoff(fake, sleeps):
    fake.script([(500, {}), (503, {})])
    results = sendgrid(fake, sleeps).send(make_batch(3))
    assert all(r.ok for r in results) and fake.requests == 3 and len(fake.accepted) == 3
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_sendgrid_gives_up_after_max_attempts_with_a_retryable_error(fake, sleeps):
    fake.script([(500, {})] * 5)
    with pytest.raises(TransportError) as info:
        sendgrid(fake, sleeps).send(make_batch(1))
    assert info.value.retryable is True and info.value.ambiguous is False
    assert fake.requests == 5 and len(sleeps) == 4 and fake.accepted == []


def test_sendgrid_bad_request_fails_at_once_with_the_providers_message(fake, sleeps):
    batch = make_batch(1, categories=[f"c{i}" for i in range(11)])
    with pytest.raises(TransportError, match="categories") as info:
        sendgrid(fake, sleeps).send(batch)
    assert info.value.retryable is False and fake.requests == 1 and sleeps == []


def test_sendgrid_wrong_api_key_fails_at_once(sleeps):
    with FakeSendGrid(api_key="SG.right") as fake:
        with pytest.raises(TransportError, match="401") as info:
            SendGridTransport("SG.wrong", fake.url, sleep=sleeps.append).send(make_batch(1))
        assert info.value.retryable is False and fake.requests == 1 and sleeps == []


@pytest.mark.slow
def test_sendgrid_read_timeout_is_ambiguous_and_never_retried(fake, sleeps):
    fake.script([("hang", 0.8)])
    with pytest.raises(TransportError) as info:
        sendgrid(fake, sleeps, timeout=0.2).send(make_batch(1))
    assert info.value.ambiguous is True and info.value.retryable is False
    assert fake.requests == 1 and sleeps == []
    # Which is why it is ambiguous: the provider accepts it after all.
    deadline = time.monotonic() + 3
    while not fake.accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [a.to for a in fake.accepted] == [["user0@example.org"]]


def test_sendgrid_unreachable_host_is_retried_then_retryable(sleeps):
    transport = SendGridTransport("SG.k", f"http://127.0.0.1:{free_port()}", sleep=sleeps.append, max_attempts=3)
    with pytest.raises(TransportError) as info:
        transport.send(make_batch(1))
    assert info.value.retryable is True and info.value.ambiguous is False and len(sleeps) == 2


def test_sendgrid_failure_in_a_later_request_reports_what_was_already_sent(fake, sleeps):
    batch = make_batch(1500)
    batch.envelopes[1200].custom_args["delivery_id"] = 1200  # not a string: SendGrid refuses
    with pytest.raises(TransportError) as info:
        sendgrid(fake, sleeps).send(batch)
    assert info.value.retryable is False and fake.requests == 2
    assert [r.to for r in info.value.sent] == [e.to for e in batch.envelopes[:1000]]
    assert all(r.ok and r.provider_message_id for r in info.value.sent)


# -- the fake itself refuses what SendGrid refuses ------------------------------

def post_raw(fake: FakeSendGrid, payload: object, auth: str | None = "Bearer SG.k") -> tuple[int, dict]:
    request = urllib.request.Request(f"{fake.url}/v3/mail/send", data=json.dumps(payload).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def valid_payload(personalizations: int = 1) -> dict:
    return {
        "personalizations": [{"to": [{"email": f"u{i}@example.org"}]} for i in range(personalizations)],
        "from": {"email": "news@example.com"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "text"}, {"type": "text/html", "value": "<p>html</p>"}],
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p.update(valid_payload(1001)), "personalizations"),
        (lambda p: p["personalizations"][0].update(custom_args={"delivery_id": 7}),
         "personalizations.0.custom_args.delivery_id"),
        (lambda p: p["personalizations"][0].update(headers={"X-SG-ID": "x"}), "personalizations.0.headers"),
        (lambda p: p.update(headers={"Date": "today"}), "headers"),
        (lambda p: p["content"].reverse(), "content"),
        (lambda p: p["content"][0].update(value=""), "content.0.value"),
        (lambda p: p.pop("subject"), "subject"),
        (lambda p: p["personalizations"][0].update(to=[]), "personalizations.0.to"),
        (lambda p: p.update(categories=["x" * 256]), "categories.0"),
    ],
    ids=["1001-personalizations", "non-string-custom-arg", "reserved-personal-header", "reserved-header",
         "html-before-text", "empty-content", "no-subject", "no-recipient", "long-category"],
)
def test_fake_sendgrid_rejects_what_sendgrid_rejects(fake, change, field):
    payload = valid_payload()
    change(payload)
    status, body = post_raw(fake, payload)
    assert status == 400
    assert body["errors"][0]["field"] == field and body["errors"][0]["message"] and body["errors"][0]["help"] is None
    assert fake.requests == 1 and fake.accepted == []


def test_fake_sendgrid_requires_a_bearer_token_and_accepts_a_valid_payload(fake):
    assert post_raw(fake, valid_payload(), auth=None)[0] == 401
    assert post_raw(fake, valid_payload(2))[0] == 202
    assert [a.to for a in fake.accepted] == [["u0@example.org"], ["u1@example.org"]]
    assert fake.requests == 2


# -- rendering --------------------------------------------------------------------

@pytest.mark.parametrize(
    "source",
    ["{{ ''.__class__.__mro__ }}", "{{ ''.__class__ }}", "{{ cycler.__init__.__globals__ }}",
     "{{ [].append(1) }}", "{{ 'x' * 10000000 }}"],
)
def test_render_sandbox_blocks_escapes_to_python(source):
    with pytest.raises(TemplateError):
        render(source, {})


def test_render_knows_nothing_beyond_its_context():
    assert render("[{{ config }}][{{ request }}][{{ contact.first_name }}]", {}) == "[][][]"


def test_render_escapes_html_only_when_asked():
    context = {"name": '<script>alert("x")</script>'}
    assert render("Hi {{ name }}", context, html=True) == "Hi &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    assert render("Hi {{ name }}", context) == 'Hi <script>alert("x")</script>'


def test_syntax_errors_are_template_errors_with_the_line():
    with pytest.raises(TemplateError, match="line 2"):
        check("ok\n{% if %}")
    with pytest.raises(TemplateError):
        render("{{ name | no_such_filter }}", {})
    check("Hello {{ name }}{% if x %}!{% endif %}")  # valid: no error


# -- the outbox page ------------------------------------------------------------

@pytest.fixture
def outbox_app(tmp_path):
    app = Flask(__name__)
    app.config.update(TESTING=True, PC_ENV="development", PC_INSTANCE_PATH=str(tmp_path))
    app.register_blueprint(outbox_views.bp)
    return app


def test_outbox_page_lists_a_message_and_shows_it_with_clickable_links(outbox_app, tmp_path):
    OutboxTransport(tmp_path / "outbox").send(make_batch(1))
    name = next((tmp_path / "outbox").glob("*.eml")).name
    client = outbox_app.test_client()

    listing = client.get("/outbox/").get_data(as_text=True)
    assert "Hello User 0" in listing and "user0@example.org" in listing and f"/outbox/{name}" in listing

    page = client.get(f"/outbox/{name}").get_data(as_text=True)
    assert "List-Unsubscribe" in page and "&lt;https://pc.example/u/0&gt;" in page
    assert 'sandbox="allow-same-origin allow-popups' in page and f'src="/outbox/{name}/html"' in page
    body = client.get(f"/outbox/{name}/html")  # the HTML body, whole, in its own sandboxed document
    assert '<a href="https://pc.example/u/0">Unsubscribe' in body.get_data(as_text=True)
    assert "script-src 'none'" in body.headers["Content-Security-Policy"]
    assert '<a href="https://pc.example/u/0" target="_blank" rel="noopener">' in page  # the text part


@pytest.mark.parametrize("path", ["/outbox/..%2Fsecret.eml", "/outbox/../secret.eml", "/outbox/secret.txt",
                                  "/outbox/missing.eml"])
def test_outbox_page_refuses_names_outside_the_outbox(outbox_app, tmp_path, path):
    (tmp_path / "secret.eml").write_text("Subject: secret\n\nsecret")
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "secret.txt").write_text("Subject: secret\n\nsecret")
    assert outbox_app.test_client().get(path).status_code == 404


def test_outbox_view_refuses_a_traversal_name_passed_directly(outbox_app, tmp_path):
    (tmp_path / "secret.eml").write_text("Subject: secret\n\nsecret")
    with outbox_app.test_request_context():
        with pytest.raises(Exception) as info:
            outbox_views.show("../secret.eml")
    assert getattr(info.value, "code", None) == 404


def test_outbox_page_does_not_exist_in_production(outbox_app, tmp_path):
    OutboxTransport(tmp_path / "outbox").send(make_batch(1))
    outbox_app.config["PC_ENV"] = "production"
    assert outbox_app.test_client().get("/outbox/").status_code == 404
