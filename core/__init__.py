"""Shared by every Gonets role: typed settings, job contracts and statuses, the error tree,
the Redis store and the dramatiq broker wiring.  Imports none of the roles."""
