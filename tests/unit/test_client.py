"""The API client reports S3 refusals by code and message only, never S3's signature details."""

from __future__ import annotations

import httpx

from app.client import _s3_refusal

SIGNATURE_MISMATCH = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
    "<Message>The request signature we calculated does not match</Message>"
    "<AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId>"
    "<SignatureProvided>5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    "</SignatureProvided><StringToSign>AWS4-HMAC-SHA256 ...</StringToSign></Error>"
)


def test_an_s3_refusal_names_the_code_and_hides_signature_details() -> None:
    error = _s3_refusal(httpx.Response(403, text=SIGNATURE_MISMATCH))
    text = str(error)
    assert error.code == "storage_refused:SignatureDoesNotMatch"
    assert "does not match" in text
    assert "5d672d79" not in text
    assert "AKIDEXAMPLE" not in text
    assert "StringToSign" not in text


def test_a_refusal_without_xml_still_has_a_code() -> None:
    error = _s3_refusal(httpx.Response(502, text="bad gateway"))
    assert error.code == "storage_refused:502"
