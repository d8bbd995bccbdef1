# Production image: the orchestrator (default) or a worker (`segue worker run ...`).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip install --no-cache-dir --upgrade pip \
 && python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 segue
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY config ./config
USER segue
ENV PYTHONUNBUFFERED=1 \
    SEGUE_WORKFLOW_CONFIG=/app/config/workflow_config.json \
    SEGUE_LOG_FORMAT=json
ENTRYPOINT ["segue"]
CMD ["serve"]
