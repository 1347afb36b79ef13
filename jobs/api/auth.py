"""Personal API tokens as `Authorization: Bearer <token>` (jobs/api/tokens.py makes them)."""

from ninja.security import HttpBearer

from jobs.api import tokens


class TokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        found = tokens.verify(token)
        if found is None:
            return None  # ninja answers 401 (problems.install words it)
        request.user = found.user
        request.api_token = found
        return found
