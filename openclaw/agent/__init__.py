"""
The brains: what turns a message into a reply.

``rules`` answers the daemon's slash commands offline; ``openai`` and
``anthropic`` call a language model; ``failover`` tries several providers in
order behind a circuit breaker.  ``factory.make_brain`` picks from the config.
"""
