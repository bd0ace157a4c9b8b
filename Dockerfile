# The daemon image: `monitor run` as a non-root user, listening on $PORT or 9469.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
# uvloop: the faster event loop `monitor run` uses when installed (README, Performance).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[uvloop]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin monitor
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/example.yaml /etc/monitor/monitor.yaml
ENV MONITOR_CONFIG=/etc/monitor/monitor.yaml \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 9469
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/-/healthy' % os.environ.get('PORT', '9469'), timeout=2)" || exit 1
# SIGTERM stops the daemon cleanly (running probes are cancelled, the server closes).
STOPSIGNAL SIGTERM
ENTRYPOINT ["monitor", "run"]
