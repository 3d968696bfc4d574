"""The built-in raw datasets; importing this package registers them all."""

from beaver.data.sources import alpaca, generic, hh_rlhf, moss, safe_rlhf, toyworld

__all__ = ["alpaca", "generic", "hh_rlhf", "moss", "safe_rlhf", "toyworld"]
