"""``make bench``: the figures that matter, each beside a baseline measured in the same run."""
