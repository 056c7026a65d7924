"""monitoring plane."""
