"""Any ordering of requests from a project's keys, with credits added between them: the
decision and what is left match a model where every budget a request touches (its key's own
limit, its project's shared budget, its credits) is checked and spent together or not at all,
and credits refuse first. Hypothesis draws the orderings; the stores answer for real."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nowramp_auth import Authenticator, Credits, KeyManager, RateLimit
from nowramp_auth.stores import KeyStore
from tests.conftest import make_store
from tests.outcomes import outcome

DAY = timedelta(days=1)

# Each step: ("request", key index) or ("add", key index, credits).
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(0, 2)),
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(1, 3)),
    ),
    min_size=1,
    max_size=30,
)
PLANS = st.fixed_dictionaries(
    {
        "project": st.integers(1, 8),
        "own": st.lists(st.one_of(st.none(), st.integers(1, 6)), min_size=3, max_size=3),
        "credits": st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=3, max_size=3),
    }
)


@dataclass
class Model:
    """What the budgets hold, as the contract says they must."""

    project: int
    own: list[int | None]
    credits: list[int | None]
    used: list[int] = field(default_factory=lambda: [0, 0, 0])
    project_used: int = 0

    def request(self, key: int) -> str:
        credits = self.credits[key]
        if credits is not None and credits < 1:
            return "CREDITS_EXHAUSTED"
        own = self.own[key]
        if (own is not None and self.used[key] >= own) or self.project_used >= self.project:
            return "RATE_LIMITED"
        self.used[key] += 1
        self.project_used += 1
        if credits is not None:
            self.credits[key] = credits - 1
        return "ok"


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, namespace: str) -> KeyStore:
    return make_store(request.param, request, namespace)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=PLANS, steps=STEPS)
def test_any_ordering_matches_the_model(store: KeyStore, plan: dict, steps: list[tuple]):
    manager, auth = KeyManager(store), Authenticator(store)
    project = f"p-{uuid.uuid4().hex[:8]}"
    manager.set_project_limits(project, [RateLimit(plan["project"], DAY)])
    keys = [
        manager.create(
            scopes=["quotes:read"],
            project_id=project,
            rate_limit=RateLimit(own, DAY) if own is not None else None,
            credits=Credits(credits) if credits is not None else None,
        )
        for own, credits in zip(plan["own"], plan["credits"], strict=True)
    ]
    model = Model(plan["project"], list(plan["own"]), list(plan["credits"]))
    for step in steps:
        key = keys[step[1]]
        if step[0] == "add":
            if model.credits[step[1]] is None:
                continue
            model.credits[step[1]] = (model.credits[step[1]] or 0) + step[2]
            assert manager.add_credits(key.key.id, step[2]) == model.credits[step[1]]
            continue
        assert outcome(auth, key.secret) == model.request(step[1]), (step, model)
    for index, key in enumerate(keys):
        assert manager.get(key.key.id).credits_remaining == model.credits[index]
