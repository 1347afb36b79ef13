"""The two ways a provider says no. Kept apart from the providers package so that
`jobs.http` can raise them without importing every provider."""


class Refusal(Exception):
    """Input the provider cannot take; the message is shown to the user as is."""

    def __init__(self, message: str, code: str = "refused"):
        super().__init__(message)
        self.message = message
        self.code = code


class ProviderError(Exception):
    """A failed exchange with a provider.

    `retryable`: the same request may succeed later (429, 5xx, timeouts, no connection).
    `maybe_received`: the request may have reached the provider (a timeout after sending),
    so a submit must not be sent again blindly.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable=False,
        retry_after=None,
        maybe_received=False,
        status=None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.maybe_received = maybe_received
        self.status = status
