"""A campaign's report counts our own unsubscribes (one-click and the unsubscribe page, through the link in
that campaign's mail) beside the provider's unsubscribe events, each person once."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from preference_center import campaigns, engagement, feedback, optouts
from preference_center.extensions import db
from preference_center.models import Contact, Delivery, EngagementEvent, Subscription

from .helpers import csrf_token, drain, factories, text_of

pytestmark = pytest.mark.sendgrid()


# A contact with confirmed consent to the topic.
subscriber = factories.subscriber


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


def run(topic, name: str = "W") -> int:
    campaign = campaigns.create({"name": name, "topic": topic.key, "subject": "Hi", "text": "Hello"}, created_by="t")
    campaigns.schedule(campaign, None)
    db.session.commit()
    drain(campaign.id)
    return campaign.id


def link_in_mail(fake, email: str, campaign_id: int) -> str:
    """The one-click link (path and query) of the List-Unsubscribe header the provider got for `email`."""
    for mail in fake.accepted:
        if mail.to == [email] and mail.custom_args.get("campaign_id") == str(campaign_id):
            header = mail.headers["List-Unsubscribe"]
            return header[1:header.index(">")].split("://", 1)[1].split("/", 1)[1].join(["/", ""])
    raise AssertionError(f"no mail to {email}")


def unsubscribed(campaign_id: int) -> tuple[int, int, int]:
    figures = engagement.report(campaign_id)
    return figures["unsubscribed"], figures["unsubscribed_by_link"], figures["unsubscribed_at_provider"]


def provider_event(delivery: Delivery, kind: str) -> dict:
    stamp = int(dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC).timestamp())
    return {"sg_event_id": f"{kind}-{delivery.id}", "event": kind, "email": "x@example.com",
            "delivery_id": str(delivery.id), "campaign_id": str(delivery.campaign_id), "timestamp": stamp}


def delivery_of(campaign_id: int, contact: Contact) -> Delivery:
    return db.session.scalar(select(Delivery).where(Delivery.campaign_id == campaign_id,
                                                    Delivery.contact_id == contact.id))


def test_a_one_click_through_the_campaigns_link_counts_on_that_campaigns_report(news, fake, app):
    ann, bob = subscriber(news, "ann@example.com"), subscriber(news, "bob@example.com")
    campaign_id = run(news)
    path = link_in_mail(fake, "ann@example.com", campaign_id)
    assert "?d=" in path
    gmail = app.test_client(use_cookies=False)
    assert gmail.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert unsubscribed(campaign_id) == (0, 0, 0)  # still waiting in the inbox
    assert optouts.settle_all() == 1
    assert db.session.get(Subscription, (ann.id, news.id)).state == "unsubscribed"
    assert db.session.get(Subscription, (bob.id, news.id)).state == "subscribed"
    assert unsubscribed(campaign_id) == (1, 1, 0)
    # The provider retrying the same one-click counts nobody twice.
    assert gmail.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    optouts.settle_all()
    assert unsubscribed(campaign_id) == (1, 1, 0)


def test_the_unsubscribe_page_reached_from_the_mail_counts_too(news, fake, client):
    subscriber(news, "ann@example.com")
    campaign_id = run(news)
    path = link_in_mail(fake, "ann@example.com", campaign_id)
    page = client.get(path)
    assert page.status_code == 200 and unsubscribed(campaign_id) == (0, 0, 0)  # a GET changes nothing
    done = client.post(path, data={"csrf_token": csrf_token(page.text)})
    assert done.status_code == 200
    assert unsubscribed(campaign_id) == (1, 1, 0)


def test_someone_who_unsubscribed_at_the_provider_and_through_our_link_counts_once(news, fake, app):
    ann, bob = subscriber(news, "ann@example.com"), subscriber(news, "bob@example.com")
    campaign_id = run(news)
    # Ann first uses our one-click link, then her provider reports an unsubscribe for the same mail.
    app.test_client(use_cookies=False).post(link_in_mail(fake, "ann@example.com", campaign_id),
                                            data={"List-Unsubscribe": "One-Click"})
    optouts.settle_all()
    assert unsubscribed(campaign_id) == (1, 1, 0)
    receipt = feedback.receive([provider_event(delivery_of(campaign_id, ann), "unsubscribe"),
                                provider_event(delivery_of(campaign_id, bob), "group_unsubscribe")])
    feedback.process(receipt.new_ids)
    db.session.commit()
    assert unsubscribed(campaign_id) == (2, 1, 2)  # Ann once, Bob once


def test_a_link_naming_someone_elses_delivery_counts_on_no_campaign_but_still_unsubscribes(news, fake, app):
    ann, bob = subscriber(news, "ann@example.com"), subscriber(news, "bob@example.com")
    campaign_id = run(news)
    ann_path = link_in_mail(fake, "ann@example.com", campaign_id)
    bob_delivery = delivery_of(campaign_id, bob).id
    forged = ann_path.split("?")[0] + f"?d={bob_delivery}"
    assert app.test_client(use_cookies=False).post(forged, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    optouts.settle_all()
    assert db.session.get(Subscription, (ann.id, news.id)).state == "unsubscribed"
    assert unsubscribed(campaign_id) == (0, 0, 0)


@pytest.mark.parametrize("query", ["", "?d=", "?d=abc", "?d=-1", "?d=99999999999999999999999", "?d=0"])
def test_a_link_without_a_usable_delivery_unsubscribes_and_counts_nothing(news, fake, app, query):
    ann = subscriber(news, "ann@example.com")
    campaign_id = run(news)
    path = link_in_mail(fake, "ann@example.com", campaign_id).split("?")[0] + query
    assert app.test_client(use_cookies=False).post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    optouts.settle_all()
    assert db.session.get(Subscription, (ann.id, news.id)).state == "unsubscribed"
    assert db.session.scalar(select(func.count(EngagementEvent.id))) == 0


def test_an_opt_out_through_a_second_campaign_after_the_first_is_counted_where_it_happened(news, fake, client):
    subscriber(news, "ann@example.com")
    first = run(news, "first")
    news_topic_id = news.id
    page_path = link_in_mail(fake, "ann@example.com", first)
    page = client.get(page_path)
    client.post(page_path, data={"csrf_token": csrf_token(page.text)})
    assert unsubscribed(first) == (1, 1, 0)
    assert db.session.scalar(select(Subscription.state).where(Subscription.topic_id == news_topic_id)) == "unsubscribed"
    # Clicking the same link again withdraws nothing new: counted once.
    again = client.get(page_path)
    client.post(page_path, data={"csrf_token": csrf_token(again.text)})
    assert unsubscribed(first) == (1, 1, 0)


def test_the_report_page_shows_where_the_unsubscribes_came_from(news, fake, app, as_marketer):
    subscriber(news, "ann@example.com")
    campaign_id = run(news)
    app.test_client(use_cookies=False).post(link_in_mail(fake, "ann@example.com", campaign_id),
                                            data={"List-Unsubscribe": "One-Click"})
    optouts.settle_all()
    text = text_of(as_marketer.get(f"/admin/campaigns/{campaign_id}/report").text)
    assert "Unsubscribed: 1 in all, 1 through the unsubscribe link in this mail" in text
    assert "0 at the provider" in text
