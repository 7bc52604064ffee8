"""A client of a regionlimit node, standard library only (urllib, json).

    from regionlimit import Client
    client = Client("http://127.0.0.1:8080")
    d = client.check("user:42")
    if not d.allowed:
        ...  # retry after d.retry_after_ms

check, check_many, refund and usage map to POST /v1/check, POST /v1/check/batch,
POST /v1/refund and GET /v1/usage. A denial is a Decision with allowed False, not an error;
a refused request raises RegionlimitError with the node's code (docs/ERRORS.md). Every check
carries a request id, so the one retry after a connection failure is never counted twice.
`limit` is a decorator for a view of any framework.
"""

import functools
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Union

__all__ = ["Client", "Decision", "RegionlimitError", "limit"]


class RegionlimitError(Exception):
    """A refused request (the node's code) or an unreachable limiter (LIMITER_UNREACHABLE / LIMITER_TIMEOUT)."""

    def __init__(self, code: str, message: str, status: Optional[int] = None, path: Optional[str] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.path = path


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_ms: int
    retry_after_ms: int
    rule_id: Optional[str]
    policy: Optional[str]
    admission_id: Optional[str] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Decision":
        return cls(
            allowed=d["allowed"],
            limit=d["limit"],
            remaining=d["remaining"],
            reset_ms=d["resetMs"],
            retry_after_ms=d["retryAfterMs"],
            rule_id=d.get("ruleId"),
            policy=d.get("policy"),
            admission_id=d.get("admissionId"),
        )


Check = Union[str, Dict[str, Any]]


class Client:
    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 1.0, retries: int = 1):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.headers = {"content-type": "application/json"}
        if token is not None:
            self.headers["authorization"] = f"Bearer {token}"

    def check(self, key: str, cost: Optional[int] = None, metadata: Optional[Dict[str, str]] = None) -> Decision:
        status, body = self._call("POST", "/v1/check", self._check_body(key, cost, metadata))
        if status in (200, 429):
            return Decision.from_json(body)
        raise self._error(status, body)

    def check_many(self, checks: List[Check]) -> List[Decision]:
        """Several checks in one request: each a key, or a dict with key, cost and metadata."""
        body = {"checks": [self._check_body(c, None, None) if isinstance(c, str) else self._check_body(c["key"], c.get("cost"), c.get("metadata")) for c in checks]}
        status, answer = self._call("POST", "/v1/check/batch", body)
        if status == 200:
            return [Decision.from_json(d) for d in answer["results"]]
        raise self._error(status, answer)

    def refund(self, admission_id: str) -> Dict[str, Any]:
        """Give back the admission a check answered (its admission_id)."""
        status, body = self._call("POST", "/v1/refund", {"admissionId": admission_id}, retries=0)
        if status == 200:
            return body
        raise self._error(status, body)

    def usage(self, key: str, metadata: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        q = {"key": key, **{f"m.{k}": v for k, v in (metadata or {}).items()}}
        status, body = self._call("GET", "/v1/usage?" + urllib.parse.urlencode(q), None)
        if status == 200:
            return body
        raise self._error(status, body)

    @staticmethod
    def _check_body(key: str, cost: Optional[int], metadata: Optional[Dict[str, str]]) -> Dict[str, Any]:
        body: Dict[str, Any] = {"key": key, "requestId": uuid.uuid4().hex}
        if cost is not None:
            body["cost"] = cost
        if metadata is not None:
            body["metadata"] = metadata
        return body

    def _call(self, method: str, path: str, body: Optional[Dict[str, Any]], retries: Optional[int] = None):
        data = json.dumps(body).encode() if body is not None else None
        attempts = 1 + (self.retries if retries is None else retries)
        for attempt in range(attempts):
            req = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers if data is not None else {k: v for k, v in self.headers.items() if k != "content-type"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as res:
                    return res.status, json.loads(res.read() or b"null")
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    return e.code, json.loads(raw or b"null")
                except ValueError:
                    return e.code, None
            except TimeoutError as e:
                raise RegionlimitError("LIMITER_TIMEOUT", f"no answer from {self.url} within {self.timeout} s") from e
            except urllib.error.URLError as e:
                if isinstance(e.reason, TimeoutError):
                    raise RegionlimitError("LIMITER_TIMEOUT", f"no answer from {self.url} within {self.timeout} s") from e
                if attempt + 1 >= attempts:
                    raise RegionlimitError("LIMITER_UNREACHABLE", f"cannot reach {self.url}: {e.reason}") from e
            except ConnectionError as e:
                if attempt + 1 >= attempts:
                    raise RegionlimitError("LIMITER_UNREACHABLE", f"cannot reach {self.url}: {e}") from e
        raise AssertionError("unreachable")

    @staticmethod
    def _error(status: int, body: Any) -> RegionlimitError:
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return RegionlimitError(body["error"], str(body.get("message", "")), status, body.get("path"))
        return RegionlimitError("LIMITER_BAD_RESPONSE", f"the limiter answered {status} without an error body", status)


def limit(client: Client, key: Callable[..., str], on_denied: Optional[Callable[[Decision], Any]] = None, fail_open: bool = False):
    """Decorator: check `key(*args, **kwargs)` before the view runs.

    A denied call returns `on_denied(decision)` (default: a Flask-style ({"error": ...}, 429, headers)
    tuple). With fail_open, an unreachable limiter lets the call through.
    """

    def denied_default(d: Decision):
        return {"error": "RATE_LIMITED", "retryAfterMs": d.retry_after_ms}, 429, {"Retry-After": str(max(1, -(-d.retry_after_ms // 1000)))}

    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            try:
                d = client.check(key(*args, **kwargs))
            except RegionlimitError as e:
                if fail_open and e.code in ("LIMITER_UNREACHABLE", "LIMITER_TIMEOUT"):
                    return view(*args, **kwargs)
                raise
            if not d.allowed:
                return (on_denied or denied_default)(d)
            return view(*args, **kwargs)

        return inner

    return wrap
