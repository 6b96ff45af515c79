"""Which identifiers a request carries, after the rules of SPEC §3.

Shared by the gateway (to key a raw record by its visitor) and the processors (to resolve a
profile). Pure: values in, values out.

- ``cv_id`` (legacy ``id``) > ``cv_email`` (legacy ``email``) > ``cookie``.
- Values meaning "nobody" are absent; ids and emails are cut to 140 characters; emails compare
  case-insensitively, so they are kept lower-cased.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

NOBODY = frozenset({"", "null", "undefined", "anonymous", "guest", "0"})
MAX_IDENTIFIER_CHARS = 140


def clean(value: object) -> str | None:
    """The identifier ``value`` stands for, or None when it means nobody."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() in NOBODY:
        return None
    return text[:MAX_IDENTIFIER_CHARS]


class Identifiers(msgspec.Struct, frozen=True, gc=False):
    id: str | None = None
    email: str | None = None
    cookie: str | None = None

    @property
    def visitor_key(self) -> str:
        """The key a device's requests share: the cookie, else the highest identifier.

        Empty when the request carries none (the processors then assign a cookie).
        """
        if self.cookie:
            return "cookie:" + self.cookie
        if self.id:
            return "id:" + self.id
        if self.email:
            return "email:" + self.email
        return ""

    def names(self) -> list[str]:
        """Every identifier as ``kind:value``, the highest first (id, email, cookie)."""
        return [f"{kind}:{value}" for kind, value in
                (("id", self.id), ("email", self.email), ("cookie", self.cookie)) if value]


def identifiers_of(params: Mapping[str, object]) -> Identifiers:
    """The identifiers in a request's parameters (prefixed names beat legacy ones)."""
    ident = clean(params.get("cv_id")) or clean(params.get("id"))
    email = clean(params.get("cv_email")) or clean(params.get("email"))
    return Identifiers(
        id=ident,
        email=email.lower() if email else None,
        cookie=clean(params.get("cookie")),
    )
