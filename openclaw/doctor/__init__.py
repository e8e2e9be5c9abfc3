"""
``openclaw doctor``: check what a daemon needs and say what to fix.

Each check is a function of a :class:`~openclaw.doctor.findings.Context`
returning :class:`~openclaw.doctor.findings.Finding` records (``ok``,
``warn`` or ``fail``, with the fix); ``local`` holds the ones that read this
machine, ``remote`` the ones that ask a platform or a provider, each with
its own bounded timeout.
"""
