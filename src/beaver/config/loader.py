"""Load a stage config: YAML file + `key.sub=value` overrides (omegaconf), then pydantic.

Every user mistake becomes a `UserError` whose message names the file, the key path, the value
given and what was expected, with the closest valid key for a typo. Values are shown only when
they are short scalars: a whole-config or whole-section validator names the fields involved and
never prints the config it was given, and a secret (`SecretStr`) field's value is never shown.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, SecretStr, ValidationError

from beaver.config.builtin import resolve_config
from beaver.errors import UserError

C = TypeVar("C", bound=BaseModel)


def load_config(
    schema: type[C],
    path: str | Path | None,
    overrides: list[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> C:
    """Merge `defaults` (set by the command), then `path` (YAML), then `overrides`, and validate.

    `path` is a YAML file, or else the name of a built-in config (`toy/sft`, `ppo-lag`)."""
    source = f"{path}" if path else "the command line"
    if path is not None:
        resolved = resolve_config(path)
        if resolved != Path(path):
            source = f"{path} (built-in: {resolved})"
        path = resolved
    if overrides:
        source += " + overrides"
    layers = [
        OmegaConf.create(section_defaults(schema)),
        OmegaConf.create(defaults or {}),
        _load_yaml(path),
        _parse_overrides(overrides or [], schema),
    ]
    merged = OmegaConf.merge(*(_expand_model_paths(schema, layer) for layer in layers))
    try:
        data = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        raise UserError(
            f"Config error in {source}: cannot resolve an interpolation: {err}"
        ) from None
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, schema, source)) from None


def _expand_model_paths(schema: type[BaseModel], layer: DictConfig) -> DictConfig:
    """A model given as a path (`reward_model: out/rm`) as `{name_or_path: out/rm}`, so that a
    later layer can set one of its keys (`reward_model.trust_remote_code=true`)."""
    from beaver.config.sections import ModelCfg

    for name, field in schema.model_fields.items():
        model = _model_of(field.annotation)
        if model is None or not issubclass(model, ModelCfg) or name not in layer:
            continue
        if not OmegaConf.is_interpolation(layer, name) and isinstance(layer[name], str):
            layer[name] = {"name_or_path": layer[name]}
    return layer


def section_defaults(schema: type[BaseModel]) -> dict[str, Any]:
    """The default values of every section-typed field, as nested dicts.

    Merged first, so that `optim.lr=1e-5` changes only `lr` of a section whose stage default is
    not its class default (e.g. a reward model's `optim.weight_decay: 0.1`), instead of
    rebuilding the section from its class defaults.
    """
    out: dict[str, Any] = {}
    for name, field in schema.model_fields.items():
        if field.is_required():
            continue
        value = field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            out[name] = value.model_dump(mode="json")
    return out


def _load_yaml(path: str | Path | None) -> DictConfig:
    if path is None:
        return OmegaConf.create({})
    p = Path(path)
    if not p.is_file():
        raise UserError(f"Config file not found: {p}")
    try:
        loaded = OmegaConf.load(p)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise UserError(f"Config file {p} is not valid YAML: {err}") from None
    if not isinstance(loaded, DictConfig):
        raise UserError(f"Config file {p} must hold a mapping of keys, not a list")
    return loaded


def _parse_overrides(overrides: list[str], schema: type[BaseModel]) -> DictConfig:
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(
                f"Override {item!r} is not of the form key.sub=value (e.g. optim.lr=1e-5)"
            )
    try:
        return OmegaConf.from_dotlist(overrides)
    except (OmegaConfBaseException, yaml.YAMLError):
        pass
    # Name the one override that does not parse (the others may hold a secret).
    for item in overrides:
        try:
            OmegaConf.from_dotlist([item])
        except (OmegaConfBaseException, yaml.YAMLError) as err:
            problem = getattr(err, "problem", None) or type(err).__name__
            key = item.partition("=")[0]
            if _is_secret(schema, key.split(".")):
                item = f"{key}=**********"
            raise UserError(
                f"Override {item} does not parse: {problem} (quote a value that holds YAML's "
                "special characters, e.g. key='[a' or key='*x'; lists are written key=[a,b])"
            ) from None
    raise UserError("The overrides do not parse together; check their keys for conflicts.")


def format_validation_error(err: ValidationError, schema: type[BaseModel], source: str) -> str:
    """One short paragraph per problem: path, given value, what was expected, closest valid key."""
    lines = [f"Config error in {source}:"]
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        path = ".".join(loc) or "<root>"
        if e["type"] == "extra_forbidden":
            hint = suggest_key(schema, loc)
            lines.append(
                f"  - unknown key `{path}`" + (f" (did you mean `{hint}`?)" if hint else "")
            )
        elif e["type"] == "missing":
            lines.append(f"  - missing required key `{path}`: {_describe(schema, loc)}")
        elif e["type"] == "value_error" and _is_section(schema, loc):
            # A model validator over a whole section (or the whole config): its message names
            # the fields; its input is the section's dict, which is not printed.
            where = f"`{path}`" if loc else "config"
            lines.append(f"  - {where}: {e['msg'].removeprefix('Value error, ')}")
        else:
            expected = _describe(schema, loc)
            shown = _shown_value(schema, loc, e.get("input"))
            lines.append(
                f"  - `{path}`" + (f" = {shown}" if shown else "") + f": {e['msg']}"
                + (f" (expected {expected})" if expected else "")
            )  # fmt: skip
    return "\n".join(lines)


def _is_section(schema: type[BaseModel], loc: list[str]) -> bool:
    """Whether `loc` names the whole config or a section (a pydantic model) of it."""
    if not loc:
        return True
    owner = _walk(schema, loc)
    field = owner.model_fields.get(loc[-1]) if owner is not None else None
    return field is not None and _model_of(field.annotation) is not None


def _is_secret(schema: type[BaseModel], loc: list[str]) -> bool:
    """Whether a field on the path `loc` holds a secret."""
    model: type[BaseModel] | None = schema
    for part in loc:
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        if annotation is SecretStr or SecretStr in typing.get_args(annotation):
            return True
        model = _model_of(annotation)
    return False


def _shown_value(schema: type[BaseModel], loc: list[str], value: Any) -> str | None:
    """The given value for an error message: a secret masked; a section's value or a mapping
    (which may hold a secret) not at all; anything else as a short repr."""
    if _is_secret(schema, loc):
        return "'**********'"
    if (
        _is_section(schema, loc)
        or isinstance(value, Mapping)
        or (isinstance(value, list | tuple) and any(isinstance(v, Mapping | list) for v in value))
    ):
        return None
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `Section`, `Section | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (found := _model_of(arg)) is not None:
                return found
    return None


def _walk(schema: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The model that owns the last element of `loc`."""
    model: type[BaseModel] | None = schema
    for part in loc[:-1]:
        if model is None or part not in model.model_fields:
            return None
        model = _model_of(model.model_fields[part].annotation)
    return model


def all_paths(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """Every valid dotted key of a config schema."""
    paths = []
    for name, field in schema.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        if (sub := _model_of(field.annotation)) is not None:
            paths.extend(all_paths(sub, path + "."))
    return paths


def suggest_key(schema: type[BaseModel], loc: list[str]) -> str | None:
    """The closest valid key: a near spelling in the same section, else the same name elsewhere."""
    owner = _walk(schema, loc)
    parent = ".".join(loc[:-1])
    if owner is not None:
        close = difflib.get_close_matches(loc[-1], list(owner.model_fields), n=1, cutoff=0.6)
        if close:
            return f"{parent}.{close[0]}" if parent else close[0]
    paths = all_paths(schema)
    same_leaf = [p for p in paths if p.rsplit(".", 1)[-1] == loc[-1]]
    if same_leaf:
        return same_leaf[0]
    close = difflib.get_close_matches(".".join(loc), paths, n=1, cutoff=0.6)
    return close[0] if close else None


def _describe(schema: type[BaseModel], loc: list[str]) -> str:
    """`type: description` of the field at `loc`, for error messages."""
    owner = _walk(schema, loc)
    if owner is None or not loc or loc[-1] not in owner.model_fields:
        return ""
    field = owner.model_fields[loc[-1]]
    kind = _type_name(field.annotation)
    return f"{kind}: {field.description}" if field.description else kind


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pydantic.types.", "")


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML, in schema order."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
