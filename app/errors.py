"""Typed errors, each with an HTTP status and a stable `code`.

Pure exception classes: no web framework here, so the signer, storage, ledger and use cases
raise them without loading FastAPI. The HTTP layer renders them (app/http/problems.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

PROBLEM_TYPE_BASE = "urn:s3gate:problem:"


class AppError(Exception):
    """Base of every error a client may see; subclasses fix `status`, `code` and `title`."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"
    default_detail: ClassVar[str] = "The service failed; try again later."

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The OpenAPI examples render `cls().body()`: a new code without its own detail would
        # document the 500 text as its message.
        super().__init_subclass__(**kwargs)
        if "code" in vars(cls) and "default_detail" not in vars(cls):
            raise TypeError(f"{cls.__name__} declares code {cls.code!r} without a default_detail")

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors is not None else None
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        """The problem+json document (RFC 9457) with the `code` extension."""
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class MissingToken(AppError):
    status, code, title = 401, "missing_token", "Authentication required"
    default_detail = "Send 'Authorization: Bearer <JWT>'."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class InvalidToken(AppError):
    status, code, title = 401, "invalid_token", "Invalid token"
    default_detail = "The bearer token is invalid, expired or not accepted here."

    def __init__(self) -> None:
        # Deliberately one fixed message: callers learn nothing about why verification failed.
        super().__init__(headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"
    default_detail = "Only admins may act on another owner's files."


class QuotaExceeded(AppError):
    status, code, title = 403, "quota_exceeded", "Quota exceeded"
    default_detail = "This upload would exceed your storage or pending-upload quota."


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"
    default_detail = "No such resource."


class MethodNotAllowed(AppError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"
    default_detail = "This method is not allowed on this resource."


class ValidationFailed(AppError):
    status, code, title = 422, "validation_error", "Invalid request"
    default_detail = "The request is not valid; see `errors`."


class IdempotencyKeyReused(AppError):
    status, code, title = 422, "idempotency_key_reused", "Idempotency key reused"
    default_detail = "This Idempotency-Key was used with a different request body."


class FileTooLarge(AppError):
    status, code, title = 413, "file_too_large", "File too large"
    default_detail = "The file is larger than this service accepts."


class RequestTooLarge(AppError):
    status, code, title = 413, "request_too_large", "Request body too large"
    default_detail = "The request body is larger than this API accepts."


class ContentTypeNotAllowed(AppError):
    status, code, title = 415, "content_type_not_allowed", "Content type not allowed"
    default_detail = "This content type is not accepted for uploads here."


class FormUploadUnsupported(AppError):
    # The store does not check POST policies (S3GATE_STORE_PROFILE): a form would bind nothing.
    status, code, title = 422, "form_upload_unsupported", "Form uploads not supported"
    default_detail = (
        "This service's store does not enforce form-upload policies; upload with a PUT "
        "(omit `form`) or in parts."
    )


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"
    default_detail = "Send the request body as JSON, with Content-Type: application/json."


class RateLimited(AppError):
    status, code, title = 429, "rate_limited", "Too many requests"
    default_detail = "Too many requests; retry after the time in Retry-After."


class RateLimiterUnavailable(AppError):
    status, code, title = 503, "rate_limiter_unavailable", "Rate limiter unavailable"
    default_detail = "The shared rate limiter did not answer; try again shortly."


class UploadIncomplete(AppError):
    status, code, title = 409, "upload_incomplete", "Upload incomplete"
    default_detail = "The object is not in the store yet; upload it, then complete again."


class VerificationInProgress(UploadIncomplete):
    """Another completion of this file is verifying its object right now."""

    default_detail = (
        "Another request is verifying this upload right now; call complete again shortly."
    )


class UploadExpired(AppError):
    status, code, title = 409, "upload_expired", "Upload expired"
    default_detail = "The upload deadline has passed; create a new upload."


class UploadRejected(AppError):
    status, code, title = 422, "upload_rejected", "Upload rejected"
    default_detail = "The uploaded bytes do not match the declaration; create a new upload."


class NotPending(AppError):
    status, code, title = 409, "not_pending", "File is not pending"
    default_detail = "Only a pending upload can be changed this way."


class NotMultipart(AppError):
    status, code, title = 409, "not_multipart", "Not a multipart upload"
    default_detail = "This file is not being uploaded in parts."


class FileNotAvailable(AppError):
    status, code, title = 409, "file_not_available", "File not available"
    default_detail = "The file is not available for download (its upload is not complete)."


class StorageUnavailable(AppError):
    status, code, title = 503, "storage_unavailable", "Storage unavailable"
    default_detail = "The object store did not answer in time; try again shortly."


class DatabaseUnavailable(AppError):
    status, code, title = 503, "database_unavailable", "Database unavailable"
    default_detail = "The ledger database did not answer; try again shortly."


class MigrationsPending(AppError):
    status, code, title = 503, "migrations_pending", "Database migrations pending"
    default_detail = (
        "The ledger's schema is behind this version of s3gate; an operator must run "
        "`s3gate migrate`."
    )


class CredentialsUnavailable(AppError):
    status, code, title = 503, "credentials_unavailable", "Signing credentials unavailable"
    default_detail = "The service has no valid S3 credentials to sign with right now."


class NotReady(AppError):
    status, code, title = 503, "not_ready", "Not ready"
    default_detail = "A dependency of the service is failing; see /readyz."
