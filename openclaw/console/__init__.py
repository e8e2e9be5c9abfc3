"""
The web console: static pages served at ``/console/`` by the web listener,
talking to the daemon only over the gateway with the gateway token.
"""
