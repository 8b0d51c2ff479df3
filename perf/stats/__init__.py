"""Statistics of latency samples: percentile estimates and bounds, and two-run comparisons."""
