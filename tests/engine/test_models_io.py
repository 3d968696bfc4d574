"""beaver.models: tokenizer/model loading errors, ZeRO-3 loading, HF-format saving (gathered
under ZeRO-3), and the generation helper. (Remote code only when asked: test_remote_code.py.)"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from engine_helpers import VOCAB, save_tiny_model, tiny_llama, tiny_tokenizer
from transformers import AutoModelForCausalLM

from beaver.config.sections import DeepSpeedCfg, GenerationCfg, ModelCfg, OptimCfg, TrainCfg
from beaver.engine.build import init_engine, make_ds_config
from beaver.errors import UserError
from beaver.models import load_causal_lm, load_tokenizer, save_hf
from beaver.models.generation import cut_at_eos, eos_rate, generate, left_padded
from beaver.models.loading import fit_embeddings


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model folder not found"):
        load_causal_lm(ModelCfg(name_or_path=str(tmp_path / "nope")), torch.float32)
    with pytest.raises(UserError, match="tokenizer folder not found"):
        load_tokenizer(ModelCfg(name_or_path="./no/such/model"))


def test_folder_without_model_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot load model"):
        load_causal_lm(ModelCfg(name_or_path=str(tmp_path)), torch.float32)


def test_tokenizer_needs_eos_and_gets_pad(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    no_eos = tmp_path / "no_eos"
    tiny_tokenizer(eos=False).save_pretrained(no_eos)
    with pytest.raises(UserError, match="no EOS token"):
        load_tokenizer(ModelCfg(name_or_path=str(no_eos)))
    no_pad = tmp_path / "no_pad"
    tiny_tokenizer(pad=False).save_pretrained(no_pad)
    with caplog.at_level(logging.WARNING):
        tok = load_tokenizer(ModelCfg(name_or_path=str(no_pad)))
    assert tok.pad_token_id == tok.eos_token_id == 2 and "no PAD token" in caplog.text
    assert tok.padding_side == "right"


@pytest.mark.parametrize("zero", [0, 3])
def test_save_hf_round_trip(tmp_path: Path, zero: int) -> None:
    src = save_tiny_model(tmp_path / "src")
    train = TrainCfg(per_device_batch_size=2, gradient_accumulation_steps=1)
    ds_config = make_ds_config(DeepSpeedCfg(zero_stage=zero, precision="fp32"), train, OptimCfg())
    model = load_causal_lm(ModelCfg(name_or_path=str(src)), torch.float32, ds_config)
    assert all(hasattr(p, "ds_id") for p in model.parameters()) == (zero == 3)
    engine = init_engine(model, ds_config, OptimCfg(lr=0.05, warmup_ratio=0.0), 10)
    x = torch.randint(3, VOCAB, (2, 9))
    engine.backward(engine(input_ids=x, labels=x).loss)  # one step, so the weights differ
    engine.step()
    with torch.no_grad():
        engine.eval()
        expected = engine(input_ids=x).logits
    out = save_hf(engine, tiny_tokenizer(), tmp_path / "saved")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (tmp_path / "saved.tmp").exists()
    load_causal_lm(ModelCfg(name_or_path=str(src)), torch.float32, None)  # clears ZeRO-3 mode
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert not any(hasattr(p, "ds_id") for p in plain.parameters())
    original = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=x).logits, expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(original(input_ids=x).logits, expected)


def test_left_padding_and_eos_cut() -> None:
    tok = tiny_tokenizer()
    enc = left_padded(tok, ["t5 t6 t7", "t9"])
    assert enc["input_ids"].tolist() == [[5, 6, 7], [0, 0, 9]]
    assert enc["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert cut_at_eos([4, 5, 2, 0, 0], 2) == ([4, 5, 2], True)
    assert cut_at_eos([4, 5, 6], 2) == ([4, 5, 6], False)


def test_generate_batched_equals_one_by_one() -> None:
    model, tok = tiny_llama(3), tiny_tokenizer()
    model.train()
    prompts = ["t5 t6 t7 t8 t9", "t10", "t11 t12"]
    greedy = GenerationCfg(max_new_tokens=6, temperature=0.0)
    batched = generate(model, tok, prompts, greedy, batch_size=3)
    alone = [generate(model, tok, [p], greedy)[0] for p in prompts]
    assert [g.response_ids for g in batched] == [g.response_ids for g in alone]
    assert [g.prompt_index for g in batched] == [0, 1, 2]
    assert all(len(g.response_ids) <= 6 for g in batched)
    assert all(g.ended == (g.response_ids[-1:] == [2]) for g in batched)
    assert model.training  # the caller's mode is restored
    sampled = generate(
        model, tok, prompts, GenerationCfg(max_new_tokens=4, num_return_sequences=2), batch_size=2
    )
    assert [g.prompt_index for g in sampled] == [0, 0, 1, 1, 2, 2]
    assert eos_rate(sampled) == sum(g.response_ids[-1:] == [2] for g in sampled) / len(sampled)


@pytest.mark.parametrize("zero", [0, 3])
def test_fit_embeddings_grows_for_added_tokens(tmp_path: Path, zero: int) -> None:
    src = save_tiny_model(tmp_path / "src")
    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<tool>"]})
    train = TrainCfg(per_device_batch_size=2, gradient_accumulation_steps=1)
    ds_config = make_ds_config(DeepSpeedCfg(zero_stage=zero, precision="fp32"), train, OptimCfg())
    model = load_causal_lm(ModelCfg(name_or_path=str(src)), torch.float32, ds_config)
    fit_embeddings(model, tok, ds_config)
    assert model.get_input_embeddings().num_embeddings == VOCAB + 1
    engine = init_engine(model, ds_config, OptimCfg(warmup_ratio=0.0), 2)
    x = torch.tensor([[5, 6, VOCAB]])  # uses the new token
    engine.backward(engine(input_ids=x, labels=x).loss)
    engine.step()
    fit_embeddings(model, tiny_tokenizer(), ds_config)  # never shrinks
    assert model.get_input_embeddings().num_embeddings == VOCAB + 1
