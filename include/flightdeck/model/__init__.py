"""model plane."""
