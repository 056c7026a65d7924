"""core plane."""
