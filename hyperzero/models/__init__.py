"""Context -> policy (and Q) approximators: HyperZero, its ablations and the baselines."""
