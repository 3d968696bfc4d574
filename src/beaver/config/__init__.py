"""Validated configs: one pydantic schema per stage, loaded from YAML plus dotlist overrides."""

from beaver.config.algorithms import ALGORITHMS, OnlineAlgorithm, algorithms_of
from beaver.config.dpo import DPOCfg, DPOConfig, MergeConfig
from beaver.config.evaluation import (
    ChatConfig,
    EvalArenaConfig,
    EvalBigBenchConfig,
    EvalGPT4Config,
    ScoreEvalConfig,
    ToyEvalConfig,
)
from beaver.config.loader import dump_config, load_config
from beaver.config.sections import (
    DataCfg,
    DeepSpeedCfg,
    GenerationCfg,
    LaunchCfg,
    LoggingCfg,
    LoopCfg,
    ModelCfg,
    OptimCfg,
    SamplingCfg,
    TrainCfg,
    TrainDataCfg,
)
from beaver.config.stages import (
    LagrangeCfg,
    PPOCfg,
    PPOConfig,
    RLDataCfg,
    RLOOCfg,
    ScoreCfg,
    ScoreConfig,
    SFTConfig,
    TrainStage,
)

__all__ = [
    "ALGORITHMS",
    "ChatConfig",
    "DPOCfg",
    "DPOConfig",
    "DataCfg",
    "DeepSpeedCfg",
    "EvalArenaConfig",
    "EvalBigBenchConfig",
    "EvalGPT4Config",
    "GenerationCfg",
    "LagrangeCfg",
    "LaunchCfg",
    "LoggingCfg",
    "LoopCfg",
    "MergeConfig",
    "ModelCfg",
    "OnlineAlgorithm",
    "OptimCfg",
    "PPOCfg",
    "PPOConfig",
    "RLDataCfg",
    "RLOOCfg",
    "SFTConfig",
    "SamplingCfg",
    "ScoreCfg",
    "ScoreConfig",
    "ScoreEvalConfig",
    "ToyEvalConfig",
    "TrainCfg",
    "TrainDataCfg",
    "TrainStage",
    "algorithms_of",
    "dump_config",
    "load_config",
]
