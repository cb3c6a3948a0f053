FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
COPY broker ./broker
COPY adapters ./adapters
RUN uv sync --frozen --no-dev --compile-bytecode
COPY contracts ./contracts
ENV PATH="/app/.venv/bin:$PATH"
EXPOSE 8000
CMD ["baton", "run"]
