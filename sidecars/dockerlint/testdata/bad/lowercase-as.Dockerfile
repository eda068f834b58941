# BuildKit's FromAsCasing: "as" in lower case next to an upper-case FROM.
FROM golang:1.26.8-bookworm as build
RUN true

FROM debian:bookworm-slim
COPY --from=build /usr/local/go/VERSION /VERSION
