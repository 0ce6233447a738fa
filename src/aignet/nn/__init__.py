"""Building blocks of an adaptive ResNet: Gumbel sampling, gates, residual blocks and their
sparse execution, stochastic depth, target rates and the AIG loss. Imports only torch."""
