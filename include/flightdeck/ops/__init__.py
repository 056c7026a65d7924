"""ops plane."""
