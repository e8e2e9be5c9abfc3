# openclaw in a container (docs/deployment.md, "Containers").  Build and run:
#   docker build -t openclaw .
#   docker run -d --name openclaw --stop-timeout 45 --memory=512m -v openclaw-home:/data -p 127.0.0.1:18789:18789 -p 127.0.0.1:8080:8080 openclaw
# --stop-timeout must stay above daemon.drain_timeout (30 s by default):
# Docker's own default (10 s) would SIGKILL an ordered drain half-way.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    OPENCLAW_HOME=/data

# A fixed uid, so a volume's owner means the same account on every host.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /data \
        --shell /usr/sbin/nologin openclaw \
    && chmod 700 /data

COPY . /tmp/openclaw-src
# The last step writes twistd's plugin cache while site-packages is still
# writable: the daemon runs as openclaw and could not write it later.
RUN pip install /tmp/openclaw-src \
    && rm -rf /tmp/openclaw-src \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

# The home holds the token, the state and the logs: keep it across containers.
VOLUME ["/data"]
USER openclaw
WORKDIR /data
EXPOSE 18789 8080

# SIGTERM starts the ordered drain; exit 78 is a bad config, 73 a home
# another daemon holds.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=4).status != 200)"]
# Inside the container the listeners must take connections from outside
# it; publish them on the host's loopback only (-p 127.0.0.1:...).
CMD ["twistd", "-n", "--pidfile=", "openclaw", "--home", "/data", \
     "--gateway", "tcp:18789:interface=0.0.0.0", "--web", "tcp:8080:interface=0.0.0.0"]
