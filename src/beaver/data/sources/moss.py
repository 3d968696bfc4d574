"""MOSS supervised conversations (fnlp/moss-002-sft-data, fnlp/moss-003-sft-data).

Neither loads through `datasets.load_dataset`, so both need a local path (as in the reference):
- moss-002-sft: a folder of `*.json` files (or one file), each a list of rows whose
  `plain_text` is `[Human]: ...<eoh> [MOSS]: ...<eom> ...`;
- moss-003-sft: a folder holding `moss-003-sft-no-tools.jsonl` (or its `.zip`, extracted on
  first use), or that file; each row has `chat.turn_N.{Human,MOSS}` with `<|Human|>:` /
  `<eoh>` and `<|MOSS|>:` / `<eom>` markers.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from beaver.data.fields import get, get_int, get_str
from beaver.data.raw import BadRow, RawDataset, RawSample
from beaver.data.readers import read_file, read_files
from beaver.errors import UserError

_MOSS002_TURN = re.compile(r"\s*\[(Human|MOSS)\]:(.*?)<eo[hm]>", re.DOTALL)


def _local(name: str, path: str | None) -> Path:
    if path is None:
        raise UserError(
            f"Dataset {name!r} needs a local path (download it from the hub first): "
            f"`{name}:1.0:/path/to/{name}-data`"
        )
    local = Path(path).expanduser()
    if not local.exists():
        raise UserError(f"Dataset {name!r}: path {local} not found")
    return local


class Moss002SFT(RawDataset):
    NAME = "moss-002-sft"
    ALIASES = ("fnlp/moss-002-sft-data",)

    def __init__(self, path: str | None = None) -> None:
        local = _local(self.NAME, path)
        self.path = str(local)
        self.rows = read_files(local, what=self.NAME, fmt="json")

    def convert(self, row: Mapping[str, Any]) -> RawSample:
        text = (get_str(row, "plain_text") or "").strip()
        turns: list[str] = []
        end = 0
        for match in _MOSS002_TURN.finditer(text):
            if match.start() != end or (match.group(1) == "Human") != (len(turns) % 2 == 0):
                break
            turns.append(match.group(2).strip())
            end = match.end()
        if not turns or text[end:].strip() or len(turns) % 2:
            raise BadRow("plain_text", "is not a `[Human]: ...<eoh> [MOSS]: ...<eom>` conversation")
        return RawSample(dialogue=turns)


class Moss003SFT(RawDataset):
    NAME = "moss-003-sft"
    ALIASES = ("fnlp/moss-003-sft-data",)
    DATA_FILE = "moss-003-sft-no-tools.jsonl"

    def __init__(self, path: str | None = None) -> None:
        local = _local(self.NAME, path)
        if local.is_dir():
            archive = local / f"{self.DATA_FILE}.zip"
            if not (local / self.DATA_FILE).exists() and archive.exists():
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(local)
            local = local / self.DATA_FILE
            if not local.is_file():
                raise UserError(f"Dataset {self.NAME!r}: {local} (or its .zip) not found")
        self.path = str(local)
        self.rows = read_file(local, what=self.NAME, fmt="jsonl")

    def convert(self, row: Mapping[str, Any]) -> RawSample:
        chat = get(row, "chat")
        if not isinstance(chat, Mapping):
            raise BadRow("chat", f"must be a mapping of turns, got {type(chat).__name__}")
        num_turns = get_int(row, "num_turns", optional=True) or len(chat)
        dialogue: list[str] = []
        for i in range(1, num_turns + 1):
            turn = chat.get(f"turn_{i}")
            if not isinstance(turn, Mapping):
                raise BadRow(f"chat.turn_{i}", "is missing")
            for speaker, begin, end in (
                ("Human", "<|Human|>:", "<eoh>"),
                ("MOSS", "<|MOSS|>:", "<eom>"),
            ):
                text = turn.get(speaker)
                if not isinstance(text, str):
                    raise BadRow(f"chat.turn_{i}.{speaker}", "must be a string")
                dialogue.append(text.replace(begin, "").replace(end, "").strip())
        return RawSample(dialogue=dialogue)
