"""Reports written at the end of runs: plots of metrics, result tables."""
