"""cost-aware's per-request fields arrive the same way over HTTP as from Python."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from actors.config import load_config
from actors.routing.route import RouteRequest
from serve import native
from serve import openai_compat as oai

CFG = load_config()


def test_openai_body_fields_reach_the_route_request():
    body = oai.ChatRequest(model="cost-aware", messages=[{"role": "user", "content": "hi"}],
                           context={"task": "earnings"}, quality_target=0.9, explore=False)
    req = oai.to_route(body, CFG, 4096, 30.0)
    assert (req.policy, req.quality_target, req.explore, req.outcome_value_usd) == (
        "cost-aware", 0.9, False, None)
    priced = oai.ChatRequest(model="cost-aware", messages=[{"role": "user", "content": "hi"}],
                             outcome_value_usd=0.02)
    assert oai.to_route(priced, CFG, 4096, 30.0).outcome_value_usd == 0.02


@pytest.mark.parametrize("field, value", [("quality_target", 0), ("quality_target", 1.5),
                                          ("outcome_value_usd", -1),
                                          ("outcome_value_usd", float("inf")),
                                          ("explore", "yes")])
def test_bad_values_are_refused_naming_the_field(field, value):
    for build in (lambda: oai.ChatRequest(model="auto", messages=[{"role": "user",
                                                                    "content": "hi"}],
                                          **{field: value}),
                  lambda: RouteRequest(messages=[{"role": "user", "content": "hi"}],
                                       **{field: value}),
                  lambda: native.FeedbackRequest(request_id="x", score=2.0)):
        with pytest.raises(ValidationError) as info:
            build()
        assert field in str(info.value) or "score" in str(info.value)


def test_context_values_are_checked_at_the_boundary():
    with pytest.raises(ValidationError, match="control character"):
        oai.ChatRequest(model="auto", messages=[{"role": "user", "content": "hi"}],
                        context={"regime": "bull\r\nx"})
    with pytest.raises(ValidationError, match="at most 128"):
        RouteRequest(messages=[{"role": "user", "content": "hi"}], context={"regime": "x" * 500})
    ok = RouteRequest(messages=[{"role": "user", "content": "hi"}],
                      context={"task": "High School Physics (college)", "n": 3})
    assert ok.context == {"task": "High School Physics (college)", "n": "3"}
