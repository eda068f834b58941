# A version ARG with no default: the build does not say what it pulls.
ARG TOOL_VERSION
FROM example.com/tool:${TOOL_VERSION}

FROM debian:bookworm-slim
# A stage-level version ARG with neither a value nor a global default.
ARG SCRIPT_VERSION
RUN echo "${SCRIPT_VERSION:-none}"
