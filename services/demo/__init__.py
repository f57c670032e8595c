"""``make demo``: the whole suite on one machine with its embedded defaults."""
