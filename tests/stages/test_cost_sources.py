"""Cost sources that read text, each through a real (tiny) PPO-Lag or RLOO-Lag run: a Python
rule (`callable`), an HF sequence classifier used as it is, and an HTTP endpoint served by
`beaver serve score` started here (including the server going away mid-run)."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_constraints import _base
from test_ppo import metrics, runner
from test_ppo import world as world  # the fixture

from beaver.cli import app
from beaver.config import ClassifierCfg

RULE = """
CALLS = []


def always(prompts, responses):
    CALLS.append((list(prompts), list(responses)))
    return [1.0] * len(responses)


def never(prompts, responses):
    return [-1.0] * len(responses)


def short(prompts, responses):
    return [0.0] * 3


def two(prompts, responses):
    CALLS.append((list(prompts), list(responses)))
    return [2.0] * len(responses)
"""


def _run(cfg: dict[str, Any], path: Path, *overrides: str) -> Any:
    path.write_text(yaml.safe_dump(cfg))
    return runner.invoke(app, ["ppo-lag", "--config", str(path), *overrides])


def _constraints(cfg: dict[str, Any], *items: tuple[str, dict[str, Any], float]) -> None:
    cfg["constraints"] = [{"name": n, "source": s, "threshold": d} for n, s, d in items]


def test_a_python_rule_is_imported_when_named_and_scores_the_texts(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "harm_rules.py").write_text(RULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _base(world, tmp_path / "out")
    _constraints(
        cfg,
        ("up", {"callable": "harm_rules:always"}, 0.0),
        ("down", {"callable": "harm_rules:never"}, 0.0),
    )
    # validating the config imports nothing
    printed = _run(cfg, tmp_path / "c.yaml", "--print-config")
    assert printed.exit_code == 0 and "harm_rules" not in sys.modules
    result = _run(cfg, tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output + repr(result.exception)
    rules = sys.modules["harm_rules"]
    assert len(rules.CALLS) == 4  # one call per rollout, 4 steps
    prompts = {json.loads(line)["prompt"] for line in (world / "prompts_train.jsonl").open()}
    for seen_prompts, responses in rules.CALLS:
        assert len(seen_prompts) == len(responses) == 8
        assert set(seen_prompts) <= prompts  # the raw prompts, not the templated token ids
        assert all(isinstance(r, str) and "<" not in r for r in responses)  # decoded, no EOS
    rows = metrics(tmp_path / "out")
    assert all(r["rollout/up/cost"] == 1.0 and r["rollout/down/cost"] == -1.0 for r in rows)
    assert rows[-1]["lagrange/up/lambda"] > 1.0 > rows[-1]["lagrange/down/lambda"]
    held = json.loads((tmp_path / "out" / "summary.json").read_text())["models"]
    assert held["frozen"] == ["ref", "reward_model"]  # a rule is no model
    assert held["trained"] == ["actor", "reward_critic", "cost_critic.up", "cost_critic.down"]
    monkeypatch.delitem(sys.modules, "harm_rules")


def test_a_rule_that_misbehaves_is_a_clear_error(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bad_rules.py").write_text(RULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _base(world, tmp_path / "a")
    _constraints(cfg, ("r", {"callable": "no_such_module:f"}, 0.0))
    result = _run(cfg, tmp_path / "a.yaml")
    assert result.exit_code == 2 and "cannot import 'no_such_module'" in result.output
    cfg = _base(world, tmp_path / "b")
    _constraints(cfg, ("r", {"callable": "bad_rules:short"}, 0.0))
    result = _run(cfg, tmp_path / "b.yaml")
    assert result.exit_code == 2 and "returned 3 scores for 8 responses" in result.output
    cfg = _base(world, tmp_path / "c")
    _constraints(cfg, ("r", {"callable": "bad_rules"}, 0.0))  # no function named
    result = _run(cfg, tmp_path / "c.yaml")
    assert result.exit_code == 2 and "callable" in result.output
    cfg = _base(world, tmp_path / "d")
    _constraints(cfg, ("r", {"callable": "bad_rules:never", "cost_model": "x"}, 0.0))
    result = _run(cfg, tmp_path / "d.yaml")
    assert result.exit_code == 2 and "exactly one of" in result.output
    assert "Traceback" not in result.output
    monkeypatch.delitem(sys.modules, "bad_rules", raising=False)


def test_a_reward_term_adds_its_weighted_score_to_the_reward_models(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "help_rules.py").write_text(RULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    runs = {}
    for name, terms in (("alone", []), ("term", [{"name": "bonus", "source": {"callable": "help_rules:two"}, "weight": 0.5}])):  # fmt: skip
        cfg = _base(world, tmp_path / name)
        _constraints(cfg, ("down", {"callable": "help_rules:never"}, 0.0))
        cfg["reward_terms"] = terms
        cfg["train"]["max_steps"] = 1
        result = _run(cfg, tmp_path / f"{name}.yaml")
        assert result.exit_code == 0, result.output + repr(result.exception)
        runs[name] = metrics(tmp_path / name)[0]
    # the same first rollout (same seed, no update yet): the reward moves by 0.5 x 2 exactly
    assert runs["term"]["rollout/reward"] - runs["alone"]["rollout/reward"] == pytest.approx(1.0)
    assert runs["term"]["rollout/reward_term/bonus"] == 2.0
    assert "rollout/reward_term/bonus" not in runs["alone"]
    assert len(sys.modules["help_rules"].CALLS) == 1  # decoded once, read by one term
    cfg = _base(world, tmp_path / "bad")
    cfg["reward_terms"] = [{"name": "rm2", "source": {"cost_model": str(world / "rm")}}]
    result = _run(cfg, tmp_path / "bad.yaml")
    assert result.exit_code == 2 and "a reward term reads text" in result.output
    monkeypatch.delitem(sys.modules, "help_rules")


@pytest.fixture(scope="module")
def classifier(world: Path) -> Path:
    """A tiny randomly initialised sequence classifier with labels safe / unsafe."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(world / "model")
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, num_labels=2,
        id2label={0: "safe", 1: "unsafe"}, label2id={"safe": 0, "unsafe": 1},
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(3)
    model = LlamaForSequenceClassification(cfg)
    torch.nn.init.normal_(model.score.weight, std=2.0)  # probabilities far from 1/2
    out = world / "guard"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_a_classifier_is_used_as_it_is(world: Path, classifier: Path, tmp_path: Path) -> None:
    from beaver.models.sources import ClassifierSource

    cfg = _base(world, tmp_path / "out")
    cfg["algorithm"] = "rloo-lag"
    cfg["generation"]["num_return_sequences"] = 2
    source = {"classifier": {"model": str(classifier), "unsafe_label": "unsafe"}}
    _constraints(cfg, ("guard", source, -100.0))
    result = _run(cfg, tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = metrics(tmp_path / "out")
    costs = [r["rollout/guard/cost"] for r in rows]
    assert all(math.isfinite(c) for c in costs) and len(set(costs)) > 1
    assert rows[-1]["lagrange/guard/lambda"] > 1.0  # d = -100 is violated
    # in process: the cost is the log-odds of "unsafe" (boundary 1/2), or p - 1/2
    texts = ["keep the garden .", "try my soccer and the stadium .", "i can not help"]
    guard = ClassifierSource(ClassifierCfg(**source["classifier"]), "guard")
    enc = guard.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = guard.model(**enc).logits
    log_odds = logits[:, 1] - logits[:, 0]  # log(p / (1 - p)) for two labels
    assert torch.allclose(guard(["q"] * 3, texts), log_odds, atol=1e-4)
    as_p = ClassifierSource(ClassifierCfg(**source["classifier"], cost="probability"), "guard")
    assert torch.allclose(as_p(["q"] * 3, texts), logits.softmax(-1)[:, 1] - 0.5, atol=1e-5)
    # a label the model does not have: its labels are listed
    _constraints(
        cfg, ("guard", {"classifier": {"model": str(classifier), "unsafe_label": "toxic"}}, 0)
    )
    result = _run(cfg, tmp_path / "bad.yaml", f"output_dir={tmp_path / 'bad'}")
    assert result.exit_code == 2 and "{0: 'safe', 1: 'unsafe'}" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(world: Path) -> Any:
    """`beaver serve score` of the toy cost model on 127.0.0.1, as a separate process."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "beaver", "serve", "score", f"model={world / 'cm'}", f"port={port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as reply:
                assert json.loads(reply.read())["score_type"] == "cost"
            break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(
                    proc.stdout.read().decode() if proc.stdout else "died"
                ) from None
            time.sleep(0.1)
    yield proc, f"{url}/score"
    proc.kill()
    proc.wait()


LOCAL = """
from beaver.config import ModelCfg
from beaver.models.scorer import LoadedScoreModel

MODEL = LoadedScoreModel.load(ModelCfg(name_or_path="{model}"), normalize=True)


def score(prompts, responses):
    return MODEL.score([[dict(role="user", content=p)] for p in prompts], responses)
"""


def test_http_source_served_by_beaver_serve_score(
    world: Path, server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = server
    # a malformed request is refused with what is wrong, and the server keeps serving
    bad = urllib.request.Request(url, data=b'{"prompts": ["a"]}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=5)
    assert err.value.code == 400 and "'responses' must be a list" in err.value.read().decode()
    # the same cost model over HTTP and in this process, on the same texts: the same costs
    # (a text source scores the decoded answer with an EOS after it, as the model was trained;
    # the token-id source reads the rollout's own ids, which differ for answers cut at the
    # token limit, so the in-process side here reads the texts too)
    (tmp_path / "local_cm.py").write_text(LOCAL.format(model=world / "cm"))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _base(world, tmp_path / "out")
    _constraints(
        cfg,
        ("remote", {"http": {"url": url, "timeout_s": 10}}, 0.0),
        ("local", {"callable": "local_cm:score"}, 0.0),
    )
    result = _run(cfg, tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = metrics(tmp_path / "out")
    for row in rows:
        assert row["rollout/remote/cost"] == pytest.approx(row["rollout/local/cost"], abs=1e-5)
    assert len({r["rollout/remote/cost"] for r in rows}) > 1  # real scores, not a constant
    monkeypatch.delitem(sys.modules, "local_cm")


def test_the_server_going_away_stops_the_run_clearly_with_its_checkpoint_intact(
    world: Path, server: Any, tmp_path: Path
) -> None:
    proc, url = server
    out = tmp_path / "out"
    cfg = _base(world, out)
    cfg["train"]["max_steps"] = 40
    _constraints(cfg, ("remote", {"http": {"url": url, "retries": 1, "backoff_s": 0.1}}, 0.0))
    second = out / "checkpoints" / "step-00000002" / "meta.json"

    def stop_server() -> None:  # as soon as step 2 is saved, the server dies
        while not second.exists():
            time.sleep(0.005)
        proc.kill()

    killer = threading.Thread(target=stop_server, daemon=True)
    killer.start()
    result = _run(cfg, tmp_path / "c.yaml", "train.save_every=1")
    killer.join(timeout=30)
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert f"cost source {url} is not answering: 2 tries failed" in result.output
    assert "Traceback" not in result.output
    steps = [int(r["step"]) for r in metrics(out)]
    assert 2 <= max(steps) < 40  # it stopped on the way, after step 2
    latest = (out / "checkpoints" / "latest").read_text().strip()
    assert (out / "checkpoints" / latest / "meta.json").is_file()  # the last one is complete
    assert int(latest.removeprefix("step-")) >= 2
