"""Is the smaller, faster model still right? Python tests with quality checks.

    pytest examples --tokrate-model=smollm2                 # one model
    pytest examples --tokrate-model=smollm2,smollm2-q2_k    # plus the trade-off table

Every check runs on every measured round; a test fails when its pass rate is below its
minimum (default: every round must pass), and the failure shows the check, the rounds,
the answers and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quality_checks import founded_in_1975

ARTICLE = (Path(__file__).parent / "article.txt").read_text(encoding="utf-8").strip()

CLUB_FACTS = {
    "type": "object",
    "properties": {
        "club": {"type": "string"},
        "sport": {"type": "string"},
        "country": {"enum": ["Australia", "United States"]},
        "founded": {"type": "integer"},
    },
    "required": ["club", "sport", "country", "founded"],
}


@pytest.mark.tokrate(rounds=5, num_predict=24)
def test_team_country(tokrate):
    question = "Is this article about an Australian or American team? Answer with one word."
    r = tokrate.run(
        f"{ARTICLE}\n\n{question}",
        checks=[
            {"type": "icontains", "value": "australia"},
            {"type": "not-icontains", "value": "america"},
            {"type": "max-words", "value": 12},
        ],
    )
    # The plugin fails the test when a round misses a check; r.quality has the details.
    assert r.quality.total == r.rounds  # 5, unless --tokrate-rounds says otherwise
    assert r.output_tokens.max <= 24


@pytest.mark.tokrate(rounds=3, num_predict=80)
def test_club_facts_json(tokrate):
    r = tokrate.run(
        f"{ARTICLE}\n\nExtract facts from the article as JSON: the club's name, its sport, "
        "its country and the year it was founded.",
        format=CLUB_FACTS,  # structured output: Ollama's format=, a grammar when embedded
        checks=[
            {"type": "jsonschema", "value": CLUB_FACTS},
            {
                "type": "python",
                "value": lambda answer: json.loads(answer)["country"] == "Australia",
                "name": "country is Australia",
            },
            founded_in_1975,  # a function from quality_checks.py, shared with the YAML suite
        ],
    )
    assert r.samples[0].done_reason == "stop"  # the JSON object was closed
