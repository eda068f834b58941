# syntax=docker/dockerfile:1.28
# Everything the checker must accept: versions from ARG defaults, a stage-level
# ARG inheriting a global default, scratch, stages referenced by name and by
# index, and a named build context.
ARG BASE_VERSION=bookworm-slim
ARG VERSION=dev

FROM debian:${BASE_VERSION} AS base
ARG VERSION
RUN echo "${VERSION}" > /version

FROM scratch AS empty

FROM base
COPY --from=base /version /version-by-name
COPY --from=0 /version /version-by-index
COPY --from=payload app/ /app/
