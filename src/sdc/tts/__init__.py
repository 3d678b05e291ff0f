"""Speech synthesis: more voices for training than a dataset has."""
