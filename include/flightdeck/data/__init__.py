"""data plane."""
