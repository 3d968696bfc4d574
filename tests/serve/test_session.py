"""Chat state, commands, prompt rendering and sampling options, without a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from beaver.config import GenerationCfg
from beaver.models.generation import generation_kwargs
from beaver.models.scorer import LoadedScoreModel
from beaver.serve.session import Bot, ChatSession, parse_command


def test_parse_command() -> None:
    assert parse_command("/exit") == "/exit" and parse_command(" /QUIT ") == "/exit"
    assert parse_command("/regenerate") == "/regenerate"
    assert parse_command("/nope") == "?"
    assert parse_command("hello /exit") is None and parse_command("/ not a command") is None


def _session() -> ChatSession:
    return ChatSession([Bot("a", None, None), Bot("b", None, None)])


def test_each_bot_keeps_its_own_answers() -> None:
    s = _session()
    s.add_user("hi")
    s.add_answer(s.bots[0], "a1")
    s.add_answer(s.bots[1], "b1")
    assert s.bots[0].history == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "a1"},
    ]
    assert s.transcript() == [("you", "hi"), ("a", "a1"), ("b", "b1")]
    assert s.drop_last_answers() and s.bots[1].history == [{"role": "user", "content": "hi"}]
    assert s.turns == 1


def test_rewind_drops_an_interrupted_turn_and_reset_forgets() -> None:
    s = _session()
    s.add_user("one")
    for bot in s.bots:
        s.add_answer(bot, "x")
    mark = s.mark()
    s.add_user("two")
    s.add_answer(s.bots[0], "half")  # interrupted before bot b answered
    s.rewind(mark)
    assert all(len(b.history) == 2 for b in s.bots)
    s.reset()
    assert s.turns == 0 and not s.drop_last_answers()


@pytest.fixture(scope="module")
def toy_tokenizer(toy_world: Path) -> Any:
    return AutoTokenizer.from_pretrained(toy_world / "tokenizer")


def test_a_bot_continues_its_whole_history(toy_tokenizer: Any) -> None:
    bot = Bot("toy", None, toy_tokenizer)
    session = ChatSession([bot], template="chat")
    session.add_user("give me tips")
    session.add_answer(bot, "water the seeds")
    session.add_user("and the goal ?")
    text = toy_tokenizer.decode(bot.prompt_ids("chat")[0])
    # the toy chat template is the reference template: each answer closed by EOS
    assert text == (
        "beginning of conversation : user : give me tips assistant : water the seeds </s> "
        "user : and the goal ? assistant :"
    )


def test_score_models_read_prompt_answer_eos(toy_tokenizer: Any) -> None:
    scorer = LoadedScoreModel(model=None, tokenizer=toy_tokenizer, template="auto")  # type: ignore[arg-type]
    ids = scorer.encode([{"role": "user", "content": "give me tips"}], " water the seeds ")
    assert ids[-1] == toy_tokenizer.eos_token_id
    want = "beginning of conversation : user : give me tips assistant : water the seeds </s>"
    assert toy_tokenizer.decode(ids) == want


def test_generation_kwargs() -> None:
    class Tok:
        pad_token_id, eos_token_id = 0, 2

    greedy = generation_kwargs(GenerationCfg(temperature=0.0), Tok())
    assert greedy["do_sample"] is False and greedy["temperature"] is None
    sampled = generation_kwargs(GenerationCfg(temperature=0.7, top_k=0, top_p=0.9), Tok())
    assert sampled["do_sample"] and sampled["top_k"] == 0 and sampled["top_p"] == 0.9
    assert sampled["pad_token_id"] == 0 and sampled["eos_token_id"] == 2
