"""`beaver eval bigbench` on a model whose log-likelihoods are known by hand.

The model is a real `LlamaForCausalLM` made into a bigram table: its attention and MLP outputs
are zeroed (o_proj, down_proj = 0), so the residual stream is the token embedding e_i (one-hot);
the final RMSNorm maps it to sqrt(H) e_i, and lm_head[j, i] = T[i, j] / sqrt(H) makes the logits
of the next token exactly row T[i] of a table we write. So p(next | ..., i) = softmax(T[i]).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from typer.testing import CliRunner

from beaver.cli import app
from beaver.eval.bigbench import load_task, option_logprobs, postprocess, prepare

WORDS = ["<pad>", "</s>", "<unk>", "q", "a", ":", "?", "choice", "yes", "no", "is", "the", "sky",
         "grass", "red", "blue", "what", "color"]  # fmt: skip
ID = {w: i for i, w in enumerate(WORDS)}
H = 32
NEVER = -30.0  # e^-30: a probability of ~1e-13, below the tests' tolerance


def _table() -> torch.Tensor:
    """T[i, j] = logit of token j after token i."""
    table = torch.zeros(len(WORDS), len(WORDS))  # default rows: uniform
    table[ID[":"]] = NEVER
    table[ID[":"], ID["yes"]] = math.log(3.0)  # after ":": p(yes) = 3/4, p(no) = 1/4
    table[ID[":"], ID["no"]] = 0.0
    table[ID["yes"]] = NEVER
    table[ID["yes"], ID["</s>"]] = 0.0  # "yes" ends the answer
    table[ID["no"]] = NEVER
    table[ID["no"], ID["no"]] = 0.0  # after "no": p(no) = p(</s>) = 1/2
    table[ID["no"], ID["</s>"]] = 0.0
    return table


@pytest.fixture(scope="module")
def bigram(tmp_path_factory: pytest.TempPathFactory) -> Path:
    core = Tokenizer(models.WordLevel(vocab=ID, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    cfg = LlamaConfig(
        vocab_size=len(WORDS), hidden_size=H, intermediate_size=8, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-12,
        tie_word_embeddings=False, max_position_embeddings=256,
        eos_token_id=ID["</s>"], pad_token_id=ID["<pad>"], bos_token_id=None,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.copy_(torch.eye(len(WORDS), H))
        model.model.norm.weight.fill_(1.0)
        head = torch.zeros(len(WORDS), H)
        head[:, : len(WORDS)] = _table().T / math.sqrt(H)  # head[j, i] = T[i, j] / sqrt(H)
        model.lm_head.weight.copy_(head)
    out = tmp_path_factory.mktemp("bigram")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _task(path: Path) -> Path:
    task = {
        "name": "tiny_mixed",
        "examples": [
            {"input": "is the sky blue ?", "target_scores": {"yes": 1, "no": 0}},
            {"input": "is the grass red ?", "target_scores": {"yes": 0, "no": 1, "no no": 0}},
            {"input": "is the sky red ?", "target_scores": {"yes": 0.5, "no": 1}},
            {"input": "what color is the sky ?", "target": "yes"},
            {"input": "what color is the grass ?", "target": ["no", "nope"]},
        ],
    }
    path.write_text(json.dumps(task))
    return path


def test_prompt_format_follows_bigbench_defaults(tmp_path: Path) -> None:
    task = load_task(_task(tmp_path / "task.json"))
    prepared = prepare(task, shots=0, seed=0)
    assert prepared[0].prompt in (
        "\nQ: is the sky blue ?\n  choice: no\n  choice: yes\nA: ",
        "\nQ: is the sky blue ?\n  choice: yes\n  choice: no\nA: ",
    )
    assert prepared[3].prompt == "\nQ: what color is the sky ?\nA: " and prepared[3].targets == [
        "yes"
    ]
    one_shot = prepare(task, shots=1, seed=0)[3].prompt
    assert one_shot.endswith("\nQ: what color is the sky ?\nA: ") and one_shot.count("\nQ: ") == 2


def test_option_logprobs_match_the_table(bigram: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(bigram).eval()
    tok = AutoTokenizer.from_pretrained(bigram)
    got = option_logprobs(model, tok, [("Q: is it ?\nA: ", "yes"), ("A:", "no"), ("A: ", "no no")])
    # p(yes | :) = 3/4; p(no | :) = 1/4; p(no no | :) = 1/4 * p(no | no) = 1/4 * 1/2
    want = [math.log(0.75), math.log(0.25), math.log(0.25) + math.log(0.5)]
    assert got == pytest.approx(want, abs=1e-4)


def test_postprocess_cuts_at_stop_and_applies_regex() -> None:
    assert postprocess(" yes\nQ: next", None, None) == "yes"
    assert postprocess("the answer is 42. done", ".", r"\d+") == "42"
    assert postprocess("nothing here", None, r"\d+") == ""


def test_eval_bigbench_scores_equal_the_hand_computation(tmp_path: Path, bigram: Path) -> None:
    task_dir = tmp_path / "tiny_mixed"
    task_dir.mkdir()
    _task(task_dir / "task.json")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["eval", "bigbench", f"model={bigram}", f"tasks=[{task_dir}]", f"output_dir={out}"]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "bigbench.json").read_text())["tasks"][0]
    # The model always prefers "yes" (3/4 vs 1/4; "no no" 1/8): grades 1, 0 and 0.5.
    assert scores["multiple_choice_grade"] == pytest.approx((1 + 0 + 0.5) / 3)
    # Greedy answers are "yes" then EOS: right on the first generative example, wrong on the 2nd.
    assert scores["exact_str_match"] == pytest.approx(0.5)
    records = [
        json.loads(line) for line in (out / "bigbench_examples.jsonl").read_text().splitlines()
    ]
    second = records[1]
    lp = dict(zip(second["choices"], second["logprobs"], strict=True))
    assert lp["no no"] == pytest.approx(math.log(0.125), abs=1e-4)
    assert [r.get("answer") for r in records[3:]] == ["yes", "yes"]
    assert "tiny_mixed" in result.output and "0.500" in result.output


def test_bad_task_file_is_a_clear_error(tmp_path: Path, bigram: Path) -> None:
    bad = tmp_path / "task.json"
    bad.write_text(json.dumps({"examples": [{"input": "x"}]}))
    result = CliRunner().invoke(app, ["eval", "bigbench", f"model={bigram}", f"tasks=[{bad}]"])
    assert result.exit_code == 2 and "needs `target_scores` or `target`" in result.output
