"""Runnable stand-ins for every provider, built from the providers' documents only.

Nothing here imports Gonets: a test that pits Gonets against a sandbox proves something only
if the two were not built from the same code.  Each sandbox keeps a log of the requests it
received and has fault switches, set over HTTP at ``/_sandbox/...`` so a test in another
process can flip them.
"""
