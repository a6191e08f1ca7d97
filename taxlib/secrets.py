"""One rule for every secret a process is configured with (tokens, keys)."""
from __future__ import annotations

PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "secret", "token", "password", "placeholder", "example", "xxxx")
HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def secret_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable as a secret, or None when it is."""
    if len(value) < 16:
        return f"must be at least 16 characters; {HINT}"
    if any(word in value.lower() for word in PLACEHOLDER_WORDS) or len(set(value)) < 6:
        return f"looks like a placeholder; {HINT}"
    return None
