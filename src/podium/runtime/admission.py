"""Whether a unit may start now: shared resources, rate limits and throttled endpoints.

Three kinds of limit stand between a ready unit and its agent, besides the agent's own
`concurrency` (which the registry keeps):

- **resources**: named capacities (`resources: {gpu: 2}`); a step's units each hold what
  `uses_resources` says while they run, all of it or none (no unit holds half and waits).
- **rate limits**: a token bucket per agent (`rate_limit:` on the agent) or per model
  endpoint (`rate_limit:` on the model, shared by every agent calling it there); an
  agent's own limit replaces its endpoint's for its calls.
- **throttles**: a concurrency limit the adaptation controller puts on an endpoint that
  answered HTTP 429, and lifts as calls succeed (`podium.runtime.adaptation`).

A unit that may not start is parked on a token (`resource:gpu`, `rate:<endpoint>`,
`throttle:<endpoint>`); `released` and `refilled` say which tokens may go again. Nothing
here does I/O or reads a clock: the caller passes `now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from podium.model import RateLimit


@dataclass(slots=True)
class TokenBucket:
    """Requests (and model tokens) a minute, refilled steadily; it holds a second's worth
    (at least one call), so calls are spread over the minute rather than sent in a burst."""

    limit: RateLimit
    requests: float = 0.0
    tokens: float = 0.0
    updated: float | None = None

    def __post_init__(self) -> None:
        self.requests = _held(self.limit.requests_per_minute)
        self.tokens = _held(self.limit.tokens_per_minute)

    def _refill(self, now: float) -> None:
        elapsed = 0.0 if self.updated is None else max(now - self.updated, 0.0)
        self.updated = now
        rpm, tpm = self.limit.requests_per_minute, self.limit.tokens_per_minute
        if rpm:
            self.requests = min(_held(rpm), self.requests + rpm * elapsed / 60.0)
        if tpm:
            self.tokens = min(_held(tpm), self.tokens + tpm * elapsed / 60.0)

    def take(self, now: float) -> bool:
        """Take one request, if the bucket has one and its tokens are not overdrawn."""
        self._refill(now)
        if self.limit.requests_per_minute and self.requests < 1.0:
            return False
        if self.limit.tokens_per_minute and self.tokens <= 0.0:
            return False
        if self.limit.requests_per_minute:
            self.requests -= 1.0
        return True

    def spend(self, tokens: int, now: float) -> None:
        """Count the model tokens a call reported (the bucket may go below zero)."""
        self._refill(now)
        if self.limit.tokens_per_minute:
            self.tokens -= tokens

    def ready_at(self, now: float) -> float:
        """When `take` can next succeed (now, if it can already)."""
        self._refill(now)
        wait = 0.0
        rpm, tpm = self.limit.requests_per_minute, self.limit.tokens_per_minute
        if rpm and self.requests < 1.0:
            wait = (1.0 - self.requests) * 60.0 / rpm
        if tpm and self.tokens <= 0.0:
            wait = max(wait, (1e-6 - self.tokens) * 60.0 / tpm)
        return now + wait


def _held(per_minute: float | None) -> float:
    """What a bucket holds when full: a second's worth, and at least one."""
    return max((per_minute or 0.0) / 60.0, 1.0)


@dataclass(slots=True)
class Throttle:
    """A concurrency limit on an endpoint, moved by the controller (AIMD)."""

    limit: float
    ceiling: float
    in_flight: int = 0


@dataclass(slots=True)
class Admission:
    """The resources, buckets and throttles of one run, and who holds what."""

    capacity: Mapping[str, int]
    buckets: dict[str, TokenBucket] = field(default_factory=lambda: {})
    throttles: dict[str, Throttle] = field(default_factory=lambda: {})
    _free: dict[str, int] = field(default_factory=lambda: {})
    # unit key -> (endpoint, bucket, resources held)
    _held: dict[str, tuple[str, str | None, Mapping[str, int]]] = field(default_factory=lambda: {})
    _waiting: dict[str, str] = field(default_factory=lambda: {})  # rate token -> bucket

    def __post_init__(self) -> None:
        self._free = dict(self.capacity)

    def throttle(self, endpoint: str, limit: float, ceiling: float) -> Throttle:
        """Put (or move) a concurrency limit on `endpoint`, counting the calls it has open."""
        throttle = self.throttles.get(endpoint)
        if throttle is None:
            throttle = self.throttles[endpoint] = Throttle(
                limit, ceiling, in_flight=self.in_flight(endpoint)
            )
        throttle.limit = limit
        return throttle

    def in_flight(self, endpoint: str) -> int:
        """Units admitted on `endpoint` and not yet released."""
        return sum(1 for held, _, _ in self._held.values() if held == endpoint)

    def add_limit(self, bucket: str, limit: RateLimit) -> None:
        """Rate-limit bucket `bucket` (an agent's or an endpoint's; the first limit wins)."""
        self.buckets.setdefault(bucket, TokenBucket(limit))

    def admit(
        self,
        key: str,
        endpoint: str,
        needs: Mapping[str, int] | None,
        now: float,
        *,
        bucket: str | None = None,
    ) -> str | None:
        """Start unit `key` on `endpoint` holding `needs`, taking a call from rate-limit
        bucket `bucket` (if any); None, or the token to wait on."""
        throttle = self.throttles.get(endpoint)
        if throttle is not None and throttle.in_flight >= int(throttle.limit):
            return f"throttle:{endpoint}"
        for name, count in (needs or {}).items():
            if self._free[name] < count:
                return f"resource:{name}"
        if bucket is not None and not self.buckets[bucket].take(now):
            token = f"rate:{bucket}"
            self._waiting[token] = bucket
            return token
        for name, count in (needs or {}).items():
            self._free[name] -= count
        if throttle is not None:
            throttle.in_flight += 1
        self._held[key] = (endpoint, bucket, needs or {})
        return None

    def released(self, key: str, tokens: int, now: float) -> list[str]:
        """Unit `key` ended having used `tokens` model tokens: the tokens that may go again."""
        held = self._held.pop(key, None)
        if held is None:
            return []
        endpoint, bucket, needs = held
        freed = []
        for name, count in needs.items():
            self._free[name] += count
            freed.append(f"resource:{name}")
        throttle = self.throttles.get(endpoint)
        if throttle is not None:  # only a throttle that exists has units waiting on it
            throttle.in_flight -= 1
            freed.append(f"throttle:{endpoint}")
        if bucket is not None and tokens:
            self.buckets[bucket].spend(tokens, now)
        return freed

    def next_refill(self, now: float) -> float | None:
        """When the earliest bucket a unit waits on can give again."""
        if not self._waiting:  # the common case, asked on every turn of the run's loop
            return None
        times = [self.buckets[bucket].ready_at(now) for bucket in self._waiting.values()]
        return min(times, default=None)

    def refilled(self, now: float) -> list[str]:
        """The rate tokens whose bucket can give again now (they stop being waited on)."""
        ready = [t for t, e in self._waiting.items() if self.buckets[e].ready_at(now) <= now]
        for token in ready:
            del self._waiting[token]
        return ready

    def holding(self, name: str) -> int:
        """How much of resource `name` is held now."""
        return self.capacity[name] - self._free[name]
