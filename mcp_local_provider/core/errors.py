"""The errors a request can end with. Each knows its HTTP status; the shell maps it to the
route family's error shape once (see ``http/middleware/errors.py``)."""

from __future__ import annotations


class ProviderError(Exception):
    status = 500
    code = "internal_error"
    type = "server_error"
    #: Whether a client retrying the same request could succeed (sets ``x-should-retry``).
    retryable = False
    #: Seconds after which a retry may succeed (sets ``Retry-After``); None: not said.
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if retry_after is not None:
            self.retry_after = retry_after
        #: Extra response headers (rate-limit state, for instance).
        self.headers = headers or {}


class BadRequest(ProviderError):
    status = 400
    code = "invalid_request"
    type = "invalid_request_error"


class Unauthorized(ProviderError):
    status = 401
    code = "unauthorized"
    type = "authentication_error"


class NotFound(ProviderError):
    status = 404
    code = "not_found"
    type = "invalid_request_error"


class Forbidden(ProviderError):
    """The request came from somewhere it may not (Host, Origin, peer)."""

    status = 403
    code = "forbidden"
    type = "permission_error"


class MethodNotAllowed(ProviderError):
    """The route exists but not for this method (``GET /v1/chat/completions``)."""

    status = 405
    code = "method_not_allowed"
    type = "invalid_request_error"


class ScopeNotGranted(ProviderError):
    status = 403
    code = "scope_not_granted"
    type = "permission_error"


class Conflict(ProviderError):
    status = 409
    code = "conflict"
    type = "invalid_request_error"


class RequestTimeout(ProviderError):
    status = 408
    code = "request_timeout"
    type = "invalid_request_error"


class PayloadTooLarge(ProviderError):
    status = 413
    code = "payload_too_large"
    type = "invalid_request_error"


class UnsupportedMediaType(ProviderError):
    status = 415
    code = "unsupported_media_type"
    type = "invalid_request_error"


class RateLimited(ProviderError):
    """Over a rate limit for now; ``retry_after`` says when the next request may pass."""

    status = 429
    code = "rate_limited"
    type = "rate_limit_error"
    retryable = True
    retry_after = 1.0


class LimitReached(ProviderError):
    status = 429
    code = "session_limit_reached"
    type = "rate_limit_error"


class AgentFailed(ProviderError):
    """The agent answered with an error."""

    status = 502
    code = "agent_error"
    type = "server_error"


class AgentDisconnected(ProviderError):
    status = 502
    code = "agent_disconnected"
    type = "server_error"


class SessionEnded(ProviderError):
    status = 502
    code = "session_ended"
    type = "server_error"


class NoActiveSession(ProviderError):
    status = 503
    code = "no_active_session"
    type = "server_error"


class ClientGone(ProviderError):
    """The client went away, or stopped reading its answer (nginx's 499)."""

    status = 499
    code = "client_disconnected"


class ShuttingDown(ProviderError):
    status = 503
    code = "shutting_down"
    type = "server_error"
    retryable = True


class Overloaded(ProviderError):
    """Too many connections or requests at once."""

    status = 503
    code = "overloaded"
    type = "server_error"
    retryable = True
    retry_after = 1.0


class AuditUnavailable(ProviderError):
    """The audit log cannot be written: requests are refused until it can."""

    status = 503
    code = "audit_unavailable"
    type = "server_error"
    retryable = True
    retry_after = 5.0


class AgentTimeout(ProviderError):
    status = 504
    code = "timeout"
    type = "server_error"

    def __init__(self, message: str, *, phase: str) -> None:
        super().__init__(message)
        self.phase = phase


class ModelNotFound(NotFound):
    """No active agent session serves the model the client asked for."""

    code = "model_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model")


class Unsupported(BadRequest):
    """The model exists but its agent does not declare the capability the request needs."""

    code = "unsupported_capability"


class QuotaExhausted(RateLimited):
    """Every session that could take the request is cooling down after its vendor refused
    (rate limit or quota); ``retry_after`` is when the first comes back."""

    code = "quota_exhausted"
