"""beaver: Safe RLHF (PPO-Lagrangian with reward and cost models) on DeepSpeed."""

__version__ = "0.1.0"
