"""`make bench`: Baton's speed next to a raw Redis baseline measured in the same run."""
