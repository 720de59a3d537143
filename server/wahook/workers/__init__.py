"""`wahook serve --workers N`: N webhook front processes over one event log.

wahook.workers.supervisor (the parent's side: starting, restarting, stopping the fronts),
wahook.workers.front (one front process), wahook.workers.handoff (the frames between them).
"""
