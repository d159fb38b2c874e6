"""The groups and quota claims (S3GATE_GROUP_CLAIM, S3GATE_QUOTA_CLAIM, S3GATE_QUOTA_TIERS):
what a token may carry, what is refused as 401 invalid_token, and the settings' own checks."""

from __future__ import annotations

from typing import Any

import pytest

from app.auth import MAX_GROUPS, Principal, Quota, TokenVerifier, mint_token
from app.config import AuthSettings, ConfigError, load_settings
from app.errors import InvalidToken
from tests.unit.test_auth import NOW, SECRET, FakeClock, claims, encode, settings

TIERS = '{"free": {"pending": 1}, "pro": {"bytes": 1000, "pending": 50}, "unlimited": {}}'


def verifier(**kwargs: Any) -> TokenVerifier:
    kwargs.setdefault("group_claim", "groups")
    kwargs.setdefault("quota_claim", "quota")
    kwargs.setdefault("quota_tiers", TIERS)
    return TokenVerifier(settings(**kwargs), clock=FakeClock())


async def principal(**extra: Any) -> Principal:
    return await verifier().verify(encode(claims(**extra)))


async def refused(**extra: Any) -> None:
    with pytest.raises(InvalidToken) as info:
        await principal(**extra)
    assert info.value.status == 401
    assert info.value.code == "invalid_token"


# --- groups ------------------------------------------------------------------------------------


async def test_a_string_group_claim_is_one_group() -> None:
    assert (await principal(groups="org-42")).groups == ("org-42",)


async def test_a_list_group_claim_keeps_its_order() -> None:
    assert (await principal(groups=["b", "a", "c"])).groups == ("b", "a", "c")


async def test_repeated_groups_are_kept_once_in_first_seen_order() -> None:
    assert (await principal(groups=["b", "a", "b", "a", "c"])).groups == ("b", "a", "c")


async def test_a_token_without_the_group_claim_has_no_groups() -> None:
    assert (await principal()).groups == ()


async def test_an_empty_group_list_is_no_groups() -> None:
    assert (await principal(groups=[])).groups == ()


async def test_groups_are_read_only_from_the_configured_claim() -> None:
    token = encode(claims(groups=["a"], org_id="org-1"))
    assert (await verifier(group_claim="org_id").verify(token)).groups == ("org-1",)
    unset = TokenVerifier(settings(), clock=FakeClock())
    assert (await unset.verify(token)).groups == ()


async def test_groups_of_printable_unicode_are_accepted() -> None:
    assert (await principal(groups=["équipe", "チーム"])).groups == ("équipe", "チーム")


async def test_up_to_max_groups_distinct_groups_are_accepted() -> None:
    groups = [f"g{i}" for i in range(MAX_GROUPS)]
    assert (await principal(groups=groups + groups)).groups == tuple(groups)


async def test_more_than_max_groups_distinct_groups_is_refused() -> None:
    await refused(groups=[f"g{i}" for i in range(MAX_GROUPS + 1)])


async def test_a_group_of_255_chars_is_accepted_and_256_refused() -> None:
    assert (await principal(groups=["g" * 255])).groups == ("g" * 255,)
    await refused(groups=["g" * 256])


@pytest.mark.parametrize(
    "groups",
    [42, 1.5, True, None, {"name": "a"}, ["a", 1], ["a", None], ["a", ["b"]], [{}], "", ["a", ""]],
    ids=[
        "number",
        "float",
        "bool",
        "null",
        "object",
        "list-with-number",
        "list-with-null",
        "nested-list",
        "list-with-object",
        "empty-string",
        "list-with-empty-string",
    ],
)
async def test_a_group_claim_of_another_shape_is_refused(groups: Any) -> None:
    await refused(groups=groups)


@pytest.mark.parametrize(
    "group",
    ["a\x00b", "a\nb", "a\x7fb", "a\u0085b", "a\u2028b", "a\u202eb", "a\u200bb", "\ud800"],
    ids=["nul", "newline", "del", "nel", "line-separator", "bidi", "zero-width", "surrogate"],
)
async def test_a_group_with_control_or_format_characters_is_refused(group: str) -> None:
    await refused(groups=group)
    await refused(groups=["ok", group])


# --- quota -------------------------------------------------------------------------------------


async def test_a_quota_object_sets_the_owners_quotas() -> None:
    assert (await principal(quota={"bytes": 100, "pending": 2})).quota == Quota(100, 2)


async def test_each_quota_key_is_optional() -> None:
    assert (await principal(quota={"pending": 1})).quota == Quota(bytes=None, pending=1)
    assert (await principal(quota={"bytes": 0})).quota == Quota(bytes=0, pending=None)
    assert (await principal(quota={})).quota == Quota()


async def test_a_token_without_the_quota_claim_has_the_global_quota() -> None:
    assert (await principal()).quota is None


async def test_the_quota_claim_is_ignored_unless_configured() -> None:
    token = encode(claims(quota={"pending": 1}))
    assert (await TokenVerifier(settings(), clock=FakeClock()).verify(token)).quota is None


async def test_a_tier_name_gives_that_tiers_quotas() -> None:
    assert (await principal(quota="pro")).quota == Quota(bytes=1000, pending=50)
    assert (await principal(quota="free")).quota == Quota(bytes=None, pending=1)
    assert (await principal(quota="unlimited")).quota == Quota()


@pytest.mark.parametrize("tier", ["enterprise", "PRO", " pro", ""], ids=repr)
async def test_an_unknown_tier_is_refused(tier: str) -> None:
    await refused(quota=tier)


async def test_a_tier_name_is_refused_when_no_tiers_are_configured() -> None:
    with pytest.raises(InvalidToken):
        await verifier(quota_tiers="").verify(encode(claims(quota="pro")))


@pytest.mark.parametrize(
    "quota",
    [
        {"bytes": -1},
        {"pending": -5},
        {"bytes": True},
        {"pending": False},
        {"bytes": 1.0},
        {"pending": 2.5},
        {"bytes": "100"},
        {"pending": None},
        {"bytes": 2**62 + 1},
        {"pending": 1_000_001},
        {"bytes": 10, "files": 3},
        {"Bytes": 10},
        42,
        True,
        None,
        ["pro"],
        [{"bytes": 1}],
    ],
    ids=[
        "negative-bytes",
        "negative-pending",
        "bool-bytes",
        "bool-pending",
        "float-bytes",
        "float-pending",
        "string-bytes",
        "null-pending",
        "bytes-beyond-bound",
        "pending-beyond-bound",
        "unknown-key",
        "wrong-case-key",
        "number",
        "bool",
        "null",
        "list",
        "list-of-object",
    ],
)
async def test_a_quota_claim_of_another_shape_is_refused(quota: Any) -> None:
    await refused(quota=quota)


async def test_groups_and_quota_are_read_together_and_cached_with_the_token() -> None:
    v = verifier()
    token = encode(claims(groups=["a"], quota="pro", scope="s3gate:admin"))
    first = await v.verify(token)
    assert first == Principal("alice", True, ("a",), Quota(1000, 50))
    assert await v.verify(token) is first


async def test_mint_token_merges_extra_claims() -> None:
    token = mint_token(SECRET, "alice", now=NOW, extra_claims={"groups": ["a"], "quota": "pro"})
    minted = await verifier().verify(token)
    assert (minted.groups, minted.quota) == (("a",), Quota(1000, 50))


# --- settings ----------------------------------------------------------------------------------


def load(**overrides: Any) -> AuthSettings:
    return load_settings(AuthSettings, _env_file=None, jwt_secret=SECRET, **overrides)


def test_quota_tiers_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3GATE_QUOTA_TIERS", TIERS)
    monkeypatch.setenv("S3GATE_QUOTA_CLAIM", "tier")
    monkeypatch.setenv("S3GATE_GROUP_CLAIM", "org_id")
    loaded = load()
    assert (loaded.quota_claim, loaded.group_claim) == ("tier", "org_id")
    assert {name: (t.bytes, t.pending) for name, t in loaded.quota_tiers.items()} == {
        "free": (None, 1),
        "pro": (1000, 50),
        "unlimited": (None, None),
    }


def test_the_new_settings_default_to_off() -> None:
    loaded = load()
    assert (loaded.group_claim, loaded.quota_claim, loaded.quota_tiers) == (None, None, {})


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{", "invalid JSON at line 1, column 2"),
        ("[]", "must be a JSON object"),
        ('"pro"', "must be a JSON object"),
        ('{"pro": 5}', "tier 'pro': must be an object"),
        ('{"pro": {"bytes": -1}}', "tier 'pro': bytes must be an integer"),
        ('{"pro": {"pending": true}}', "tier 'pro': pending must be an integer"),
        ('{"pro": {"pending": 1.5}}', "tier 'pro': pending must be an integer"),
        ('{"pro": {"bytes": "10"}}', "tier 'pro': bytes must be an integer"),
        ('{"pro": {"files": 1}}', "tier 'pro': unknown key(s) 'files'"),
        ('{"": {}}', "a tier name must be"),
        ('{"pro": {}, "pro": {"pending": 1}}', "'pro' appears twice"),
    ],
    ids=[
        "bad-json",
        "array",
        "string",
        "tier-not-object",
        "negative",
        "bool",
        "float",
        "string-number",
        "unknown-key",
        "empty-name",
        "duplicate-tier",
    ],
)
def test_bad_quota_tiers_stop_startup_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, problem: str
) -> None:
    monkeypatch.setenv("S3GATE_QUOTA_TIERS", raw)
    with pytest.raises(ConfigError) as info:
        load()
    assert str(info.value).startswith("S3GATE_QUOTA_TIERS: ")
    assert problem in str(info.value)


@pytest.mark.parametrize("variable", ["S3GATE_GROUP_CLAIM", "S3GATE_QUOTA_CLAIM"])
@pytest.mark.parametrize("name", [" groups", "groups\n", "a" * 65, "gr\x00oups"], ids=repr)
def test_an_implausible_claim_name_stops_startup(variable: str, name: str) -> None:
    field = variable.removeprefix("S3GATE_").lower()
    with pytest.raises(ConfigError, match=f"^{variable}: must be a claim name"):
        load(**{field: name})


def test_a_blank_claim_name_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3GATE_GROUP_CLAIM", "  ")
    monkeypatch.setenv("S3GATE_QUOTA_TIERS", "  ")
    loaded = load()
    assert (loaded.group_claim, loaded.quota_tiers) == (None, {})


def test_one_claim_cannot_hold_both_groups_and_quotas() -> None:
    with pytest.raises(ConfigError, match="S3GATE_QUOTA_CLAIM: must not be the same claim"):
        load(group_claim="groups", quota_claim="groups")
