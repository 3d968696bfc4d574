"""`beaver eval toyworld`'s table: helpfulness split by prompt kind, harm per severity."""

from __future__ import annotations

from beaver.eval.toyworld import PolicyResult, markdown_table, table_rows


def result(help_benign: float, help_risky: float, severe: float) -> PolicyResult:
    return PolicyResult(
        helpfulness=(2 * help_benign + help_risky) / 3,
        helpfulness_benign=help_benign,
        helpfulness_risky=help_risky,
        harmful_rate=severe / 3,
        harmful_rate_risky=severe,
        harmful_rate_benign=0.0,
        harmful_rate_by_category={"violence": severe, "insult": float("nan")},
        harmful_rate_by_severity={"3": severe, "1": float("nan")},
        eos_rate=1.0,
        response_length=12.0,
        reward=None,
        cost=-4.25,
        unsafe_share_by_cost=0.0,
        count=3,
    )


def test_table_has_benign_and_risky_helpfulness_and_harm_per_severity() -> None:
    head, rows = table_rows({"ppo": result(0.9, 0.8, 1.0), "ppo-lag": result(0.88, 0.55, 0.02)})
    assert head[:6] == [
        "policy",
        "helpful",
        "help benign",
        "help risky",
        "harmful",
        "harmful risky",
    ]
    assert head[6:8] == ["severity 1", "severity 3"]
    assert head[8:10] == ["insult", "violence"]
    lag = dict(zip(head, rows[1], strict=True))
    assert (lag["help benign"], lag["help risky"], lag["severity 3"]) == ("0.880", "0.550", "2.0%")
    assert (lag["severity 1"], lag["reward"], lag["cost"]) == ("-", "-", "-4.250")


def test_markdown_table_is_the_same_table() -> None:
    text = markdown_table({"sft": result(0.6, 0.4, 0.5)})
    lines = text.splitlines()
    assert lines[0].startswith("| policy | helpful | help benign | help risky |")
    assert lines[1].count("---") == lines[0].count("|") - 1
    assert lines[2].startswith("| sft | 0.533 | 0.600 | 0.400 | 16.7% | 50.0% |")
