# UndefinedVar is found while BuildKit dispatches instructions, after it has
# resolved the base image: this fixture proves the offline resolver lets the
# linter get that far. PATH is known (the synthetic config sets it).
FROM debian:bookworm-slim
ENV PATH=/opt/tool/bin:$PATH
ENV TOOL_HOME=$TOOL_ROOT/tool
