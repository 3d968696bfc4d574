"""Built-in raw datasets read fixtures in each upstream schema into the right RawSample fields."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest
from datahelpers import pku_row, write_json, write_jsonl

from beaver.data import RawDataset, RawSample, get_dataset_class, load_raw
from beaver.data.loading import load_source
from beaver.errors import UserError

HH_RAW = {
    "chosen": "\n\nHuman: hello\n\nAssistant: hi there\n\nHuman: how are you\n\nAssistant: fine",
    "rejected": "\n\nHuman: hello\n\nAssistant: hi there\n\nHuman: how are you\n\nAssistant: go away",
}
HH_PROCESSED = {
    "context": [
        {"role": "human", "text": "hello"},
        {"role": "assistant", "text": "hi there"},
        {"role": "human", "text": "how are you"},
    ],
    "chosen": {"role": "assistant", "text": "fine"},
    "rejected": {"role": "assistant", "text": "go away"},
}


def one(spec: str) -> RawSample:
    samples = load_raw(spec)
    assert samples
    return samples[0]


def test_alpaca_joins_instruction_and_input(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "alpaca_data.json",
        [
            {"instruction": "Translate", "input": "bonjour", "output": "hello"},
            {"instruction": "Say hi", "input": "", "output": "hi"},
        ],
    )
    a, b = load_raw(f"alpaca:1:{path}")
    assert (a.input, a.answer) == ("Translate bonjour", "hello")
    assert (b.input, b.answer) == ("Say hi", "hi")
    assert a.dataset == "alpaca" and a.row == 0 and b.row == 1


def test_firefly(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "firefly.jsonl", [{"kind": "Poem", "input": "写诗", "target": "床前"}]
    )
    s = one(f"firefly:1:{path}")
    assert (s.input, s.answer, s.meta) == ("写诗", "床前", {"kind": "Poem"})


def test_moss_002_splits_turns(tmp_path: Path) -> None:
    write_json(
        tmp_path / "moss" / "en_helpfulness.json",
        [
            {
                "plain_text": "[Human]: hello<eoh> [MOSS]: hi there<eom> [Human]: bye<eoh> [MOSS]: bye!<eom>"
            },
        ],
    )
    s = one(f"moss-002-sft:1:{tmp_path / 'moss'}")
    assert s.dialogue == ["hello", "hi there", "bye", "bye!"]


def test_moss_003_from_zip(tmp_path: Path) -> None:
    folder = tmp_path / "moss3"
    folder.mkdir()
    row = {
        "num_turns": 2,
        "chat": {
            "turn_1": {"Human": "<|Human|>: hello<eoh>\n", "MOSS": "<|MOSS|>: hi<eom>\n"},
            "turn_2": {"Human": "<|Human|>: more<eoh>\n", "MOSS": "<|MOSS|>: sure<eom>\n"},
        },
    }
    with zipfile.ZipFile(folder / "moss-003-sft-no-tools.jsonl.zip", "w") as zf:
        zf.writestr("moss-003-sft-no-tools.jsonl", json.dumps(row) + "\n")
    assert one(f"moss-003-sft:1:{folder}").dialogue == ["hello", "hi", "more", "sure"]


def test_moss_needs_a_local_path() -> None:
    with pytest.raises(UserError, match="needs a local path"):
        load_raw("moss-003-sft")


@pytest.mark.parametrize("row", [HH_RAW, HH_PROCESSED], ids=["anthropic-raw", "processed"])
def test_hh_rlhf_preference_and_dialogue(tmp_path: Path, row: dict) -> None:
    path = write_jsonl(tmp_path / "hh.jsonl", [row])
    pair = one(f"hh-rlhf-harmless-preference/train:1:{path}")
    assert pair.input == ["hello", "hi there", "how are you"]
    assert (pair.answer, pair.other_answer, pair.better) == ("fine", "go away", True)
    dialogue = one(f"hh-dialogue:1:{path}")  # reference alias
    assert dialogue.dialogue == ["hello", "hi there", "how are you", "fine"]


def test_hh_rlhf_clone_folder_reads_its_data_dir(tmp_path: Path) -> None:
    clone = tmp_path / "hh-rlhf"
    write_jsonl(clone / "harmless-base" / "train.jsonl", [HH_RAW])
    write_jsonl(clone / "helpful-base" / "train.jsonl", [HH_RAW, HH_RAW])
    assert len(load_raw(f"hh-rlhf-helpful-preference/train:1:{clone}")) == 2
    assert len(load_raw(f"hh-rlhf-harmless-dialogue:1:{clone}")) == 1


def test_pku_saferlhf_old_schema(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [pku_row(better=1, safer=0)])
    s = one(f"PKU-SafeRLHF/train:1:{path}")
    assert (s.input, s.answer, s.other_answer) == ("how is the garden", "water plant", "bomb")
    assert (s.better, s.safer, s.is_safe, s.is_other_safe) == (False, True, True, False)
    assert s.category is None and s.severity is None


def test_pku_saferlhf_v1_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [pku_row(v1=True)])
    s = one(f"PKU-Alignment/PKU-SafeRLHF-30K/train:1:{path}")  # reference alias
    assert s.category == [] and s.other_category == ["Privacy", "Violence"]
    assert (s.severity, s.other_severity) == (0, 3)
    assert s.meta["prompt_source"] == "test"


def test_toyworld_names_read_the_folder(toy_dir: Path) -> None:
    assert len(load_raw(f"toyworld-sft:1:{toy_dir}")) == 3
    assert len(load_raw(f"toyworld/preference:1:{toy_dir}")) == 3
    assert len(load_raw(f"toyworld-preference-test:1:{toy_dir}")) == 1
    prompts = load_raw(f"toyworld-prompts:1:{toy_dir}")
    assert prompts[1].input == "tell me a bomb story"
    assert prompts[1].meta == {"risky": True, "topic": "story", "category": "violence"}
    assert prompts[0].category is None  # the prompt's category is metadata, not a harm label
    assert len(load_raw(f"toyworld-prompts-eval:1:{toy_dir}")) == 2


def test_toyworld_default_path_is_output_toyworld(
    tmp_path: Path, toy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="beaver toyworld"):
        load_raw("toyworld-sft")
    (tmp_path / "output").mkdir()
    toy_dir.rename(tmp_path / "output" / "toyworld")
    assert len(load_raw("toyworld-sft")) == 3


def test_hub_names_are_registered_with_reference_aliases() -> None:
    for name in (
        "PKU-SafeRLHF/train",
        "PKU-Alignment/PKU-SafeRLHF/test",
        "PKU-SafeRLHF-10K/train",
        "alpaca",
        "stanford-alpaca",
        "hh-rlhf-helpful-preference/test",
        "hh-helpful-preference/train",
        "hh-rlhf-dialogue",
        "firefly",
    ):
        assert issubclass(get_dataset_class(name), RawDataset)
    assert get_dataset_class("pku-saferlhf/train") is get_dataset_class("PKU-SafeRLHF/train")
    assert get_dataset_class("PKU-SafeRLHF-v0/train").REVISION == "v0"


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(UserError, match="Did you mean 'alpaca'"):
        get_dataset_class("alpacca")


def test_hub_dataset_offline_says_how_to_use_a_local_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(UserError, match=r"alpaca:1.0:/path/to/clone"):
        load_raw("alpaca")


def test_missing_local_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_raw(f"PKU-SafeRLHF/train:1:{tmp_path / 'nope.jsonl'}")


# ------------------------------------------------------------------ generic files


def test_generic_formats_with_identity_columns(tmp_path: Path) -> None:
    rows = [{"input": "hello", "answer": "hi", "other_answer": "go", "better": True}]
    write_json(tmp_path / "d.json", rows)
    write_jsonl(tmp_path / "d.jsonl", rows)
    with (tmp_path / "d.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow({**rows[0], "better": "true"})
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for fmt in ("json", "jsonl", "csv", "parquet"):
        s = one(f"{fmt}:1:{tmp_path / ('d.' + fmt)}")
        assert (s.input, s.answer, s.other_answer, s.better) == ("hello", "hi", "go", True), fmt


def test_generic_column_mapping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"q": "hello", "a": "hi", "source": "web"}])
    src = load_source(f"jsonl:1:{path}", columns={"input": "q", "answer": "a"})
    s = src.samples[0]
    assert (s.input, s.answer, s.meta) == ("hello", "hi", {"source": "web"})
    with pytest.raises(UserError, match="'question' is not a RawSample field"):
        load_source(f"jsonl:1:{path}", columns={"question": "q"})


def test_trl_messages_become_a_dialogue(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "be nice"},
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "hi"},
                    {"role": "user", "content": "bye"},
                    {"role": "assistant", "content": "bye"},
                ]
            }
        ],
    )
    s = one(f"jsonl:1:{path}")
    assert (s.system, s.dialogue, s.input) == ("be nice", ["hello", "hi", "bye", "bye"], None)
    prompt = write_jsonl(tmp_path / "q.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    assert one(f"jsonl:1:{prompt}").input == ["hi"]


@pytest.mark.parametrize(
    "row",
    [
        {"prompt": "hello", "chosen": "fine", "rejected": "go away"},
        {
            "prompt": [{"role": "user", "content": "hello"}],
            "chosen": [{"role": "assistant", "content": "fine"}],
            "rejected": [{"role": "assistant", "content": "go away"}],
        },
        {
            "chosen": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "fine"},
            ],
            "rejected": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "go away"},
            ],
        },
        {
            "chosen": "\n\nHuman: hello\n\nAssistant: fine",
            "rejected": "\n\nHuman: hello\n\nAssistant: go away",
        },
    ],
    ids=["standard", "conversational", "implicit-prompt", "anthropic-transcript"],
)
def test_trl_preference_rows(tmp_path: Path, row: dict) -> None:
    s = one(f"jsonl:1:{write_jsonl(tmp_path / 'p.jsonl', [row])}")
    assert s.prompt_turns() == ["hello"]
    assert (s.answer, s.other_answer, s.better) == ("fine", "go away", True)


def test_prompt_completion_and_prompt_only_rows(tmp_path: Path) -> None:
    pc = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "hello", "completion": "hi"}])
    assert (one(f"jsonl:1:{pc}").input, one(f"jsonl:1:{pc}").answer) == ("hello", "hi")
    po = write_jsonl(tmp_path / "po.jsonl", [{"prompt": "hello", "risky": False}])
    s = one(f"jsonl:1:{po}")
    assert (s.input, s.answer, s.meta) == ("hello", None, {"risky": False})


def test_folder_of_generic_files_is_read_in_name_order(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "b.jsonl", [{"input": "second", "answer": "x"}])
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"input": "first", "answer": "x"}])
    assert [s.input for s in load_raw(f"jsonl:1:{tmp_path / 'data'}")] == ["first", "second"]


def test_invalid_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "a", "answer": "b"}\n{oops\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        load_raw(f"jsonl:1:{path}")
