# Development image: the source tree with test and lint tools; run the checks with
#   docker build -f dev.Dockerfile -t segue-dev . && docker run --network host segue-dev
FROM python:3.11-slim
WORKDIR /work
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip install --no-cache-dir -e ".[dev]"
COPY . .
ENV PYTHONUNBUFFERED=1
CMD ["bash", "-c", "ruff check . && ruff format --check . && mypy && pytest unit_test integration_test -q"]
