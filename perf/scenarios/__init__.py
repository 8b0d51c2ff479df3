"""Traffic scenarios: how requests reach the models measured.

A/B against a commit (against) or a stored model (stored), both interleaved (ab); open-loop
server load (open_loop, server).
"""
