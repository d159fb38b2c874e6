"""Standard Webhooks signatures, checked by the reference `standardwebhooks` package (the
receivers' side), and the endpoint configuration that says where they go."""

from __future__ import annotations

import base64
import copy
import json
import pickle
import re
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.models import EventType
from app.webhooks import (
    EVENT_TYPES,
    WebhookEndpoint,
    WebhookSecret,
    generate_secret,
    parse_endpoints,
    sign,
    signed_headers,
)

BODY = b'{"type":"file.available","timestamp":"2026-12-03T10:00:00Z","data":{"file":{"id":"f1"}}}'
MSG_ID = "0193a6b2-5c1e-7cc0-9d2a-1f2e3d4c5b6a"
TOKEN = "tok-3f9a2c41e7b8"  # stands for a credential in the endpoint URL's query


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def now() -> int:
    return int(time.time())


@pytest.fixture(scope="module")
def secret_values() -> tuple[str, str]:
    return generate_secret(), generate_secret()


def endpoint_json(**overrides: Any) -> str:
    item: dict[str, Any] = {
        "name": "billing",
        "url": f"https://backend.example/hooks/s3gate?token={TOKEN}",
        "secrets": [generate_secret()],
        "events": ["file.available"],
    }
    item.update(overrides)
    return json.dumps([{k: v for k, v in item.items() if v is not ...}])


# --- signatures, as a receiver verifies them ------------------------------------------------


def test_the_spec_test_vector_signs_as_published() -> None:
    # The vector the Standard Webhooks / Svix libraries test against.
    secret = WebhookSecret.parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}', [secret])
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_one_secret_signature_verifies_with_standardwebhooks(
    secret_values: tuple[str, str],
) -> None:
    value = secret_values[0]
    headers = signed_headers(MSG_ID, now(), BODY, [WebhookSecret.parse(value)])
    assert Webhook(value).verify(BODY, headers) == json.loads(BODY)


def test_signed_headers_are_the_three_webhook_headers_and_json(
    secret_values: tuple[str, str],
) -> None:
    timestamp = now()
    headers = signed_headers(MSG_ID, timestamp, BODY, [WebhookSecret.parse(secret_values[0])])
    assert set(headers) == {"content-type", "webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == str(timestamp)
    assert headers["webhook-signature"].startswith("v1,")


def test_two_secrets_give_two_signatures_and_each_secret_alone_verifies(
    secret_values: tuple[str, str],
) -> None:
    # Rotation: receivers that know only the old or only the new secret both accept.
    secrets = [WebhookSecret.parse(value) for value in secret_values]
    headers = signed_headers(MSG_ID, now(), BODY, secrets)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(signature.startswith("v1,") for signature in signatures)
    for value in secret_values:
        Webhook(value).verify(BODY, headers)


def test_another_secret_does_not_verify(secret_values: tuple[str, str]) -> None:
    headers = signed_headers(MSG_ID, now(), BODY, [WebhookSecret.parse(secret_values[0])])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_values[1]).verify(BODY, headers)


@pytest.mark.parametrize("tamper", ["body", "body-whitespace", "id", "timestamp"])
def test_a_tampered_body_id_or_timestamp_fails_verification(
    secret_values: tuple[str, str], tamper: str
) -> None:
    timestamp = now()
    headers = signed_headers(MSG_ID, timestamp, BODY, [WebhookSecret.parse(secret_values[0])])
    body = BODY
    match tamper:
        case "body":
            body = BODY.replace(b'"f1"', b'"f2"')
        case "body-whitespace":
            body = BODY + b" "  # a receiver that re-serializes the JSON breaks it like this
        case "id":
            headers["webhook-id"] = MSG_ID[:-1] + "b"
        case "timestamp":
            headers["webhook-timestamp"] = str(timestamp + 1)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret_values[0]).verify(body, headers)


@pytest.mark.parametrize("age_seconds", [6 * 60, -6 * 60])
def test_a_replayed_or_future_delivery_is_refused_by_the_receiver_library(
    secret_values: tuple[str, str], age_seconds: int
) -> None:
    # The receiver's replay protection: standardwebhooks refuses a webhook-timestamp more than
    # 5 minutes from its clock, so a captured request cannot be replayed later, and each retry
    # needs a fresh timestamp (and signature) from the sender.
    headers = signed_headers(
        MSG_ID, now() - age_seconds, BODY, [WebhookSecret.parse(secret_values[0])]
    )
    with pytest.raises(WebhookVerificationError, match=r"too (old|new)"):
        Webhook(secret_values[0]).verify(BODY, headers)


@pytest.mark.parametrize("msg_id", ["", "a.b", "id with space", "id\r\nx-evil: 1", "é" * 3])
def test_a_webhook_id_that_could_break_the_signed_content_or_header_is_refused(
    secret_values: tuple[str, str], msg_id: str
) -> None:
    with pytest.raises(ValueError, match="webhook id"):
        sign(msg_id, now(), BODY, [WebhookSecret.parse(secret_values[0])])


@pytest.mark.parametrize("timestamp", [-1, 1.5, True])
def test_a_timestamp_must_be_whole_non_negative_seconds(
    secret_values: tuple[str, str], timestamp: Any
) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        sign(MSG_ID, timestamp, BODY, [WebhookSecret.parse(secret_values[0])])


def test_signing_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        sign(MSG_ID, now(), BODY, [])


# --- secrets ------------------------------------------------------------------------------


def test_generated_secrets_are_32_random_bytes_that_standardwebhooks_accepts() -> None:
    values = {generate_secret() for _ in range(20)}
    assert len(values) == 20
    for value in values:
        assert value.startswith("whsec_")
        assert len(base64.b64decode(value.removeprefix("whsec_"))) == 32
        WebhookSecret.parse(value)
        Webhook(value)


def test_an_unpadded_secret_is_accepted() -> None:
    value = generate_secret().rstrip("=")
    headers = signed_headers(MSG_ID, now(), BODY, [WebhookSecret.parse(value)])
    Webhook(value).verify(BODY, headers)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "whsec_"),
        (base64.b64encode(bytes(range(32))).decode(), "whsec_"),
        ("WHSEC_" + base64.b64encode(bytes(range(32))).decode(), "whsec_"),
        ("whsk_" + base64.b64encode(bytes(range(32))).decode(), "whsec_"),
        ("whsec_", "bytes"),
        ("whsec_not base64 at all!!", "base64"),
        (
            "whsec_" + base64.urlsafe_b64encode(bytes(range(24)) + b"\xfb\xff\xbf").decode(),
            "base64",
        ),
        (whsec(bytes(range(23))), "24 to 64 bytes, not 23"),
        (whsec(bytes(range(65))), "24 to 64 bytes, not 65"),
        (whsec(b"a" * 32), "repeats"),
        (whsec(b"abcd" * 8), "repeats"),
        (whsec(b"please-change-me-before-production"), "placeholder"),
        (whsec(b"an EXAMPLE secret for the docs 0123"), "placeholder"),
        (whsec(b"<placeholder: 32 random bytes>"), "placeholder"),
        ("whsec_changemechangemechangemechangeme", "placeholder"),
        ("whsec_EXAMPLEexampleEXAMPLEexample0123456", "placeholder"),
    ],
)
def test_a_secret_that_is_not_a_generated_whsec_key_is_refused(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        WebhookSecret.parse(value)
    if len(value) > len("whsec_"):
        assert value.removeprefix("whsec_") not in str(refused.value)


def test_a_secret_never_shows_its_key(secret_values: tuple[str, str]) -> None:
    value = secret_values[0]
    secret = WebhookSecret.parse(value)
    key = base64.b64decode(value.removeprefix("whsec_"))
    for shown in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert value.removeprefix("whsec_") not in shown
        assert key.hex() not in shown
        assert repr(key) not in shown
    assert not hasattr(secret, "__dict__")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert copy.deepcopy(secret) is secret


def test_secrets_compare_by_key(secret_values: tuple[str, str]) -> None:
    assert WebhookSecret.parse(secret_values[0]) == WebhookSecret.parse(secret_values[0])
    assert WebhookSecret.parse(secret_values[0]) != WebhookSecret.parse(secret_values[1])


# --- endpoints ----------------------------------------------------------------------------


def test_the_event_types_are_the_outboxs() -> None:
    assert EVENT_TYPES == (
        "file.available",
        "file.rejected",
        "upload.expired",
        "file.deleted",
        "file.shared",
        "grant.revoked",
        "link.created",
        "link.revoked",
    )
    assert set(EVENT_TYPES) == {event.value for event in EventType}


def test_an_endpoint_list_parses_into_endpoints(secret_values: tuple[str, str]) -> None:
    raw = json.dumps(
        [
            {
                "name": "billing",
                "url": "https://backend.example/hooks/s3gate",
                "secrets": [secret_values[0]],
                "events": ["file.available"],
            },
            {
                "name": "audit-2",
                "url": "http://audit.internal:8080/in",
                "secrets": list(secret_values),
            },
        ]
    )
    billing, audit = parse_endpoints(raw)
    assert billing.name == "billing"
    assert billing.url == "https://backend.example/hooks/s3gate"
    assert billing.secrets == (WebhookSecret.parse(secret_values[0]),)
    assert billing.event_types == frozenset({"file.available"})
    assert audit.event_types is None
    assert len(audit.secrets) == 2


def test_an_endpoint_matches_its_events_or_all_when_none_are_listed() -> None:
    billing, audit = parse_endpoints(
        json.dumps(
            [
                {
                    "name": "billing",
                    "url": "https://b.example/h",
                    "secrets": [generate_secret()],
                    "events": ["file.available", "file.deleted"],
                },
                {"name": "audit", "url": "https://a.example/h", "secrets": [generate_secret()]},
            ]
        )
    )
    assert billing.matches("file.available")
    assert billing.matches("file.deleted")
    assert not billing.matches("file.rejected")
    assert not billing.matches("upload.expired")
    assert all(audit.matches(event) for event in EVENT_TYPES)


@pytest.mark.parametrize("raw", ["", "   ", "[]"])
def test_no_configuration_means_no_endpoints(raw: str) -> None:
    assert parse_endpoints(raw) == ()


def test_endpoints_are_frozen() -> None:
    (endpoint,) = parse_endpoints(endpoint_json())
    with pytest.raises(AttributeError):
        endpoint.url = "https://elsewhere.example/"  # type: ignore[misc]


def test_an_endpoint_repr_shows_neither_secret_nor_query() -> None:
    value = generate_secret()
    (endpoint,) = parse_endpoints(endpoint_json(secrets=[value]))
    shown = repr(endpoint) + str(endpoint) + repr((endpoint,))
    assert "billing" in shown
    assert "https://backend.example/hooks/s3gate" in shown
    assert TOKEN not in shown
    assert "token=" not in shown
    assert value.removeprefix("whsec_") not in shown


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{", "invalid JSON at line 1"),
        ('{"name": "billing"}', "JSON array"),
        ('["https://b.example/h"]', "#1: must be a JSON object"),
        (endpoint_json(name="Billing"), "#1: name must be"),
        (endpoint_json(name="x" * 33), "#1: name must be"),
        (endpoint_json(name="bill ing"), "#1: name must be"),
        (endpoint_json(name=7), "#1: name must be"),
        (endpoint_json(name=...), "#1: name is missing"),
        (endpoint_json(url=...), "'billing': url is missing"),
        (endpoint_json(secrets=...), "'billing': secrets is missing"),
        (endpoint_json(event=["file.available"]), "'billing': unknown field(s) 'event'"),
        (endpoint_json(url="ftp://backend.example/hooks"), "'billing': url must use http or"),
        (endpoint_json(url="javascript:alert(1)"), "'billing': url must use http or https"),
        (endpoint_json(url="file:///etc/passwd"), "'billing': url must use http or https"),
        (endpoint_json(url="/hooks/s3gate"), "'billing': url must use http or https"),
        (endpoint_json(url="https:///hooks"), "'billing': url has no host"),
        (endpoint_json(url="https://user:pw@b.example/h"), "'billing': url must not carry a"),
        (endpoint_json(url=f"https://{TOKEN}@b.example/h"), "'billing': url must not carry a"),
        (endpoint_json(url=f"ftp://b.example/h?token={TOKEN}"), "'billing': url must use http"),
        (endpoint_json(url="https://b.example:99999/h"), "'billing': url is not a valid URL"),
        (endpoint_json(url="https://b.example/h#frag"), "'billing': url must not have a frag"),
        (endpoint_json(url="https://b.example/a b"), "'billing': url contains spaces"),
        (endpoint_json(url="https://b.example/\r\nx"), "'billing': url contains spaces"),
        (endpoint_json(url=""), "'billing': url must be a non-empty string"),
        (endpoint_json(url=["https://b.example/h"]), "'billing': url must be a non-empty"),
        (endpoint_json(events=["file.uploaded"]), "'billing': unknown event type(s) 'file.up"),
        (endpoint_json(events=[]), "'billing': events is empty"),
        (endpoint_json(events="file.available"), "'billing': events must be a list"),
        (endpoint_json(secrets=[]), "'billing': needs 1 or 2 secrets, not 0"),
        (endpoint_json(secrets=[generate_secret() for _ in range(3)]), "not 3"),
        (endpoint_json(secrets=generate_secret()), "'billing': secrets must be a list"),
        (
            endpoint_json(secrets=["whsec_c2hvcnQ="]),
            "'billing': secrets[0]: a webhook secret's key must be 24 to 64 bytes",
        ),
        (
            endpoint_json(secrets=[generate_secret(), "s3cr3t"]),
            "'billing': secrets[1]: a webhook secret must start with 'whsec_'",
        ),
        (
            endpoint_json(secrets=[whsec(b"z" * 32)]),
            "'billing': secrets[0]: the webhook secret's key repeats",
        ),
    ],
)
def test_a_bad_endpoint_list_is_refused_naming_the_endpoint_and_problem(
    raw: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as refused:
        parse_endpoints(raw)
    message = str(refused.value)
    assert TOKEN not in message
    for item in json.loads(raw) if raw.startswith("[") else []:
        secrets = item.get("secrets", []) if isinstance(item, dict) else []
        for value in secrets if isinstance(secrets, list) else [secrets]:
            assert str(value).removeprefix("whsec_") not in message


def test_invalid_json_is_refused_without_carrying_the_document() -> None:
    value = generate_secret()
    raw = endpoint_json(secrets=[value])[:-3]
    with pytest.raises(ValueError, match="invalid JSON at line 1, column") as refused:
        parse_endpoints(raw)
    assert value not in str(refused.value)
    # A logger or error tracker walking the exception chain finds nothing holding the secret.
    assert refused.value.__cause__ is None
    assert refused.value.__context__ is None


def test_the_same_secret_twice_is_refused() -> None:
    value = generate_secret()
    with pytest.raises(ValueError, match="'billing': the same secret is listed twice"):
        parse_endpoints(endpoint_json(secrets=[value, value]))


def test_two_endpoints_with_one_name_are_refused() -> None:
    one = json.loads(endpoint_json())[0]
    other = {**json.loads(endpoint_json())[0], "url": "https://other.example/h"}
    with pytest.raises(ValueError, match="'billing': the name is used twice"):
        parse_endpoints(json.dumps([one, other]))


def test_a_directly_built_endpoint_is_validated_too(secret_values: tuple[str, str]) -> None:
    secret = WebhookSecret.parse(secret_values[0])
    with pytest.raises(ValueError, match="'billing': url must use http or https"):
        WebhookEndpoint(name="billing", url="gopher://b.example/", secrets=(secret,))
    with pytest.raises(ValueError, match="unknown event type"):
        WebhookEndpoint(
            name="billing",
            url="https://b.example/",
            secrets=(secret,),
            event_types=frozenset({"file.nope"}),
        )
