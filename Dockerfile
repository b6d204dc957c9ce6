FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 NO_CYTHON=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY channelsync ./channelsync
COPY agents ./agents
COPY topics ./topics
COPY connectors ./connectors
COPY store ./store
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
