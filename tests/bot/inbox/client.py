"""A minimal browser for the inbox's HTTP tests: a cookie jar, forms, no JavaScript.

::

    browser = Browser(api.url)
    status, page = browser.get("/inbox")                 # 303 to /inbox/login when signed out
    browser.sign_in_with_link(link)
    status, page = browser.post("/inbox/r/r-1/approve", {"reason": "ok"})   # adds the CSRF token
"""

from __future__ import annotations

import http.client
import re
import urllib.parse
from http.cookies import SimpleCookie

__all__ = ["Browser", "csrf_of"]

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


class Browser:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.cookies: dict[str, str] = {}
        self.last_headers: dict[str, str] = {}
        self.set_cookies: list[str] = []

    def request(
        self, method: str, path: str, form: dict[str, str] | list[tuple[str, str]] | None = None
    ) -> tuple[int, str]:
        """One request (no redirect is followed); ``(status, body)``."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            self.last_headers = dict(response.getheaders())
            self.set_cookies = response.headers.get_all("Set-Cookie") or []
            for raw in self.set_cookies:
                for name, morsel in SimpleCookie(raw).items():
                    if morsel.value == "" or morsel["max-age"] == "0":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return response.status, text
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str]:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str], *, csrf_from: str = "") -> tuple[int, str]:
        """POST ``form`` with the CSRF token of the page at ``csrf_from`` (default: ``path``'s
        detail page, or /inbox)."""
        if "csrf" not in form:
            _, page = self.get(csrf_from or "/inbox")
            form = {**form, "csrf": csrf_of(page)}
        return self.request("POST", path, form)

    def sign_in_with_link(self, link_token: str) -> int:
        _, page = self.get("/inbox/login/link?t=" + urllib.parse.quote(link_token))
        status, _ = self.request(
            "POST", "/inbox/login/link", {"t": link_token, "csrf": csrf_of(page)}
        )
        return status

    def sign_in(self, user: str, password: str) -> tuple[int, str]:
        _, page = self.get("/inbox/login")
        return self.request(
            "POST", "/inbox/login", {"user": user, "password": password, "csrf": csrf_of(page)}
        )
