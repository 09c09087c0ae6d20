"""The campaign path's shortcuts give exactly what the general path gives.

A campaign batch signs its links through `links.UrlMaker`, fills in a plain template per recipient
without the sandbox (`CampaignMail.envelope`), and the SendGrid transport builds every personalization
of a request at once (`sendgrid.personalizations`). Each is compared here with the general code:
`links.make`, `CampaignMail.fill`, and the personalization built envelope by envelope.
"""
from __future__ import annotations

import json

import itsdangerous.timed
import pytest

from preference_center import compose, links, rules
from preference_center.extensions import db
from preference_center.mail import Envelope, MessageBatch, TemplateError
from preference_center.mail import sendgrid as sg
from preference_center.mail.base import envelope_headers
from preference_center.mail.personal import contact_values
from preference_center.models import Contact

from .helpers import factories


def _same_second(monkeypatch, when: float = 1_790_000_000.5) -> None:
    monkeypatch.setattr(itsdangerous.timed, "time", type("Clock", (), {"time": staticmethod(lambda: when)}))


# -- links -----------------------------------------------------------------------------------

@pytest.mark.parametrize("purpose, path, argument", [
    (links.UNSUBSCRIBE, "/u/", 0), (links.UNSUBSCRIBE, "/u/", 7), (links.UNSUBSCRIBE, "/u/", 2**63 - 1),
    (links.PREFERENCES, "/p/", 0), (links.CONFIRM, "/c/", [3, 4]), (links.STEP_UP, "/s/", "export"),
    (links.CONFIRM, "/c/", list(range(40))),  # too long for the fast path: the serializer itself
])
def test_a_url_maker_link_is_the_link_of_links_make(ctx, monkeypatch, purpose, path, argument):
    _same_second(monkeypatch)
    maker = links.UrlMaker(purpose, path)
    for contact in (Contact(id=1, token_version=1), Contact(id=2**62, token_version=2**40)):
        expected = links.url(path, links.make(purpose, contact, argument))
        assert maker(contact, argument) == expected
        assert maker.of(contact.id, contact.token_version, argument) == expected


# -- a plain campaign, filled in per recipient -----------------------------------------------

# Two campaigns that fill in every field between them (a plain campaign holds at most 8,000 bytes of values).
PLAIN = [
    {"subject": "{{ contact.first_name }}: news",
     "text": "Dear {{ contact.name }}, plan {{ contact.attributes.plan }}; see {{ preferences_url }}",
     "html": "<p>{{ contact.name }} &amp; co</p><a href=\"{{ unsubscribe_url }}\">x</a>"},
    {"subject": "News for {{ contact.company }}",
     "text": "{{ contact.title }} {{ contact.email }} {{ contact.attributes['seats'] }}", "html": ""},
]


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


@pytest.fixture
def people(news):
    return [
        factories.subscriber(news, "ann@example.com", name="  Ann   Lee ", company="A & B <Ltd>", title='"Chief"',
                             locale="es", attributes={"plan": "gold 'x'", "seats": 12}),
        factories.subscriber(news, "bo@example.com"),  # every optional field missing
        factories.subscriber(news, "cy@example.com", name="Cy <-pc_name-> & 'Ünïcode' \"x\"", locale="fr",
                             attributes={"plan": 2.5, "seats": True}),
    ]


@pytest.mark.parametrize("template", PLAIN)
def test_the_plain_path_gives_what_fill_gives_for_models_and_rows(news, people, template):
    mail = compose.CampaignMail(news, template["subject"], template["html"], template["text"], 5)
    assert mail.plain
    rows = [row for row, _ in rules.decide(news, [p.id for p in people]).values()]
    assert len(rows) == len(people)
    read = mail.reader(rows[0])  # the send-time re-check's rows, read by their items
    assert read is not None and mail.reader(people[0]) is None
    for contact, how in [*((p, None) for p in people), *((r, None) for r in rows), *((r, read) for r in rows)]:
        for tracking in (False, True):
            message, envelope = mail.envelope(contact, 77, tracking, how)
            unsubscribe, preferences = envelope.substitutions[compose.UNSUB], envelope.substitutions[compose.PREFS]
            assert unsubscribe.endswith("?d=77")
            filled, substitutions = mail.fill(contact_values(contact), unsubscribe, preferences, contact.locale,
                                              tracking)
            assert message is filled and message.tracking is tracking
            assert list(envelope.substitutions.items()) == list(substitutions.items())  # same order too
            assert envelope.to == contact.email
            assert envelope.headers == {"List-Unsubscribe": f"<{unsubscribe}>"}
            assert envelope.custom_args == {"delivery_id": "77", "campaign_id": "5"}


def test_only_a_plain_campaign_reads_rows_by_their_items(news, people):
    row = next(iter(rules.decide(news, [people[0].id]).values()))[0]
    assert compose.CampaignMail(news, "S", "", "{{ contact.name|title }}", 5).reader(row) is None
    assert compose.CampaignMail(news, "S", "", "{{ contact.name }}", 5).reader(row) is not None


def test_the_plain_path_signs_the_links_links_make_signs(news, people, monkeypatch):
    _same_second(monkeypatch)
    mail = compose.CampaignMail(news, PLAIN[0]["subject"], PLAIN[0]["html"], PLAIN[0]["text"], 5)
    _, envelope = mail.envelope(people[0], 0)
    assert envelope.substitutions[compose.UNSUB] == links.unsubscribe_url(people[0], news.id)
    assert envelope.substitutions[compose.PREFS] == links.preferences_url(people[0])


def test_the_plain_path_fails_a_recipient_whose_value_makes_a_part_too_large_as_fill_does(news):
    # 6,000 plain names: room for 166 characters each; a 172-character name makes the text 1,032,000.
    text = "{{ contact.name }}" * 6000
    short = factories.subscriber(news, "short@example.com", name="Bo")
    long = factories.subscriber(news, "long@example.com", name="Bartholomew Featherstonehaugh-Cholmondeley " * 4)
    mail = compose.CampaignMail(news, "Hi", "", text, 5)
    assert mail.plain
    mail.envelope(short, 1)
    for attempt in (lambda: mail.envelope(long, 2), lambda: mail.fill(contact_values(long), "u", "p", None)):
        with pytest.raises(TemplateError, match="1,000,000") as caught:
            attempt()
        assert caught.value.field == "text"


# -- the SendGrid request body ----------------------------------------------------------------

def _one_by_one(batch: MessageBatch, envelope: Envelope) -> dict:
    """A personalization as it was built before, envelope by envelope (copies, every header substituted)."""
    block: dict = {"to": [sg.address(envelope.to)]}
    if envelope.substitutions:
        block["substitutions"] = dict(envelope.substitutions)
    headers = envelope_headers(batch, envelope)
    if headers:
        block["headers"] = headers
    if envelope.custom_args:
        block["custom_args"] = dict(envelope.custom_args)
    return block


CAMPAIGN = [
    Envelope("ann@example.com", {"-pc_unsub-": "https://x/u/AB-pc_Cd", "-pc_prefs-": "https://x/p/Q",
                                 "-pc_name-": "Ann -pc_unsub-"},
             {"List-Unsubscribe": "<https://x/u/AB-pc_Cd>"}, {"delivery_id": "1", "campaign_id": "9"}),
    Envelope("Bo Bee <bo@example.com>", {"-pc_unsub-": "U2", "-pc_prefs-": "P2", "-pc_name-": ""},
             {"List-Unsubscribe": "<-pc_unsub->, <mailto:u@x?subject=-pc_name->"}, {"delivery_id": "2"}),
    Envelope("cy@example.com", {}, {"X-Own": "-pc_unsub-"}, {}),
    Envelope("di@example.com", {"-pc_unsub-": "U4"}, {}, {"delivery_id": "4"}),
]


@pytest.mark.parametrize("envelopes, common", [
    (CAMPAIGN, {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}),
    (CAMPAIGN, {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "X-Who": "for -pc_name- (-pc_prefs-)"}),
    (CAMPAIGN, {"List-Unsubscribe": "<common>"}),  # a recipient's own header wins, in the common one's place
    (CAMPAIGN, {}),
    # Placeholders without a shared beginning: every header is substituted.
    ([Envelope("a@example.com", {"{name}": "A", "%link%": "L {name}"}, {"X-A": "{name} %link%"}, {}),
      Envelope("b@example.com", {"%link%": "M"}, {"X-A": "%link%"}, {"delivery_id": "3"})],
     {"X-B": "%link% and {name}"}),
    ([Envelope("a@example.com", {}, {}, {})], {}),
])
def test_the_personalizations_of_a_request_are_the_ones_built_envelope_by_envelope(envelopes, common):
    batch = MessageBatch(from_email="News <news@example.com>", subject="-pc_name-", text="t -pc_unsub-",
                         html="<p>-pc_prefs-</p>", envelopes=envelopes, headers=common, categories=["c"])
    expected = [_one_by_one(batch, e) for e in envelopes]
    body = sg.request_body(batch, envelopes)
    assert json.dumps(body["personalizations"]) == json.dumps(expected)  # the same bytes, key order included
    assert [sg.personalization(batch, e) for e in envelopes] == expected


# -- the request body's encoding and the collector ------------------------------------------------

@pytest.mark.parametrize("value", ["plain", "é ✓ 日本", "quote \" back \\ slash", "\ud800 lone surrogate", "\x00\x1f"])
def test_an_encoded_request_body_reads_back_as_the_standard_librarys(value):
    body = {"personalizations": [{"to": [{"email": "a@example.com"}], "substitutions": {"-pc_name-": value},
                                  "custom_args": {"delivery_id": "7"}}], "tracking_settings": {"x": {"enable": False}}}
    assert json.loads(sg.encode(body)) == json.loads(json.dumps(body))


def test_the_collector_is_held_off_for_batches_and_left_as_it_was_found():
    import gc
    import threading

    from preference_center.sending import _Collector

    collector = _Collector()
    assert gc.isenabled()
    entered, leave = threading.Event(), threading.Event()

    def other_batch():
        with collector.held():
            entered.set()
            leave.wait(5)

    thread = threading.Thread(target=other_batch)
    with collector.held():
        assert not gc.isenabled()
        thread.start()
        entered.wait(5)
    assert not gc.isenabled(), "another batch is still running"
    leave.set()
    thread.join(5)
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.held():
            pass
        assert not gc.isenabled(), "switched off by someone else: left off"
    finally:
        gc.enable()
