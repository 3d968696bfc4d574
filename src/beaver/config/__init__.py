"""Validated configs: one pydantic schema per stage, loaded from YAML plus dotlist overrides."""

from beaver.config.dpo import DPOCfg, DPOConfig, MergeConfig
from beaver.config.loader import dump_config, load_config
from beaver.config.sections import (
    DataCfg,
    DeepSpeedCfg,
    GenerationCfg,
    LaunchCfg,
    LoggingCfg,
    ModelCfg,
    OptimCfg,
    TrainCfg,
)
from beaver.config.stages import (
    ChatConfig,
    LagrangeCfg,
    PPOCfg,
    PPOConfig,
    RLDataCfg,
    ScoreCfg,
    ScoreConfig,
    SFTConfig,
    TrainStage,
)

__all__ = [
    "ChatConfig",
    "DPOCfg",
    "DPOConfig",
    "DataCfg",
    "DeepSpeedCfg",
    "GenerationCfg",
    "LagrangeCfg",
    "LaunchCfg",
    "LoggingCfg",
    "MergeConfig",
    "ModelCfg",
    "OptimCfg",
    "PPOCfg",
    "PPOConfig",
    "RLDataCfg",
    "SFTConfig",
    "ScoreCfg",
    "ScoreConfig",
    "TrainCfg",
    "TrainStage",
    "dump_config",
    "load_config",
]
